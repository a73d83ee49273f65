package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Loads a contender is run under.
const (
	// LoadReference is Postfix's smtp-source, one connection per message
	// (no -d), no pipelining: the load users compare with (the headline).
	LoadReference = "reference"
	// LoadPerConn is the harness's own load generator in the same shape
	// (one connection per message, no pipelining), which measures the ack
	// latency of every message (smtp-source does not) and can AUTH.
	LoadPerConn = "per_connection"
)

// contRun is one measured run of a contender.
type contRun struct {
	n                          int
	rate                       float64
	cpu, cpuSource, cpuHarness time.Duration
	peakRSS                    int64
	lat                        []time.Duration
	sink                       SinkStats
	delivered                  int64
}

// contStats gathers a contender's runs under one load.
type contStats struct {
	c                      *Contender
	load                   string
	skip                   string
	errs                   []string
	n                      int
	rates, cpu, src, harn  []float64
	ratioPF, ratioNoop     []float64
	ratioPFDKIM            []float64
	lat                    []time.Duration
	peakRSS                int64
	dkimPass, dkimMessages int64
	dups                   int64
	runs                   []string
}

var runSeq atomic.Int64

// contenderN is how many messages contender name gets under the full
// parameters (Params.PeerN overrides N for the slow peers).
func (r *Runner) contenderN(name string) int {
	if n, ok := r.P.PeerN[name]; ok && n > 0 && n < r.P.N {
		return n
	}
	return r.P.N
}

func (r *Runner) mtaOptions(dir string, sinkPort int, g *CPUGroup, ds *DKIMSetup) MTAOptions {
	return MTAOptions{Dir: dir, SinkPort: sinkPort, Group: g, DKIM: ds, Sessions: r.P.Sessions, Petreld: r.Petreld, PetreldBase: r.PetreldBase, PeerRoot: r.PeerRoot, HarakaDir: r.harakaDir(), Logger: r.logger()}
}

func (r *Runner) harakaDir() string {
	if r.HarakaDir != "" {
		return r.HarakaDir
	}
	return DefaultPeerRoot() + "/haraka"
}

// runContender runs one contender under load with n messages: a fresh
// sink (verifying DKIM when the contender signs, counting duplicates),
// a fresh private instance, the load, then the checks: exactly n at the
// sink, no duplicate, the instance's queue empty and its own count of
// deliveries equal to n.
func (r *Runner) runContender(ctx context.Context, c *Contender, load string, n int, ds *DKIMSetup) (contRun, error) {
	res := contRun{n: n}
	so := SinkOptions{Logger: r.logger(), CheckDuplicates: c.Name != ContNoop}
	if c.DKIM && ds != nil {
		so.DKIMRecords = ds.Records
	}
	sink, err := StartSink(so)
	if err != nil {
		return res, err
	}
	defer sink.Close()
	seq := runSeq.Add(1)
	g := NewCPUGroup(fmt.Sprintf("%s-%d-%d", c.Name, os.Getpid(), seq))
	defer g.Kill()
	addr := sink.Addr()
	var mta MTA
	if c.Start != nil {
		dir, err := r.runDir(c.Name)
		if err != nil {
			return res, err
		}
		defer removeAll(dir)
		var dks *DKIMSetup
		if c.DKIM {
			dks = ds
		}
		mta, err = c.Start(ctx, r.mtaOptions(dir, sink.Port(), g, dks))
		if err != nil {
			return res, err
		}
		defer mta.Stop()
		addr = mta.Addr()
	}
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { defer close(watched); g.WatchRSS(100*time.Millisecond, stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-watched
	}()
	cpu0, _ := g.Usage()
	self0 := SelfCPU()
	var start time.Time
	switch load {
	case LoadReference:
		if c.NeedsAuth {
			return res, errors.New("needs_auth:smtp-source_cannot_authenticate")
		}
		sg := NewCPUGroup(fmt.Sprintf("source-%d-%d", os.Getpid(), seq))
		defer sg.Kill()
		s0, _ := sg.Usage()
		start = time.Now()
		if _, err := RunSMTPSource(ctx, SourceOptions{Addr: addr, Sessions: r.P.Sessions, Messages: n, Size: r.P.Size, Recipients: r.P.Recipients, PerConnection: true, Group: sg}); err != nil {
			return res, err
		}
		s1, _ := sg.Usage()
		res.cpuSource = s1 - s0
	case LoadPerConn:
		ld := SMTPLoad{Addr: addr, Sessions: r.P.Sessions, Messages: n, Size: r.P.Size, Recipients: r.P.Recipients, PerSession: 1, NoPipelining: true}
		if c.NeedsAuth {
			ld.StartTLS, ld.AuthUser, ld.AuthPass = true, c.AuthUser, c.AuthPass
		}
		lr, err := RunSMTP(ctx, ld)
		if err != nil {
			return res, err
		}
		start = lr.Start
		res.lat = lr.Latencies
		if lr.Accepted != int64(n) {
			return res, fmt.Errorf("only %d of %d accepted (temp %d perm %d errors %d, first: %v)", lr.Accepted, n, lr.TempFailed, lr.PermFailed, lr.Errors, lr.FirstErr)
		}
	default:
		return res, fmt.Errorf("unknown load %q", load)
	}
	wctx, cancel := context.WithTimeout(ctx, r.sinkWait(n))
	st, err := sink.WaitMessages(wctx, int64(n))
	cancel()
	if err != nil {
		return res, fmt.Errorf("%d of %d arrived: %w", st.Messages, n, err)
	}
	res.rate = Rate(st.Messages, st.Last.Sub(start))
	var problems []string
	if mta != nil {
		// The queue empties once every delivery is recorded; the CPU
		// figure covers the instance's whole work on the load.
		qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		q, qerr := waitQueueEmpty(qctx, mta)
		cancel()
		if qerr != nil || q != 0 {
			problems = append(problems, fmt.Sprintf("queue_not_empty:%d(%v)", q, qerr))
		}
	}
	cpu1, _ := g.Usage()
	res.cpu = cpu1 - cpu0
	res.cpuHarness = SelfCPU() - self0
	g.SampleRSS()
	res.peakRSS = g.PeakRSS()
	if mta != nil {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		d, derr := waitDelivered(dctx, mta, int64(n))
		cancel()
		res.delivered = d
		if derr != nil || d != int64(n) {
			problems = append(problems, fmt.Sprintf("own_log_counts_%d_deliveries(%v)", d, derr))
		}
	}
	// Anything arriving late (a duplicate delivery) shows up here.
	time.Sleep(300 * time.Millisecond)
	res.sink = sink.Stats()
	if res.sink.Messages != int64(n) {
		problems = append(problems, fmt.Sprintf("sink_counted_%d_of_%d", res.sink.Messages, n))
	}
	if res.sink.Duplicates != 0 {
		problems = append(problems, fmt.Sprintf("%d_duplicates", res.sink.Duplicates))
	}
	if len(problems) > 0 {
		return res, errors.New(strings.Join(problems, ","))
	}
	return res, nil
}

// removeAll removes a run directory unless PETREL_BENCH_KEEP is set
// (debugging a peer's configuration).
func removeAll(dir string) {
	if os.Getenv("PETREL_BENCH_KEEP") == "" {
		_ = os.RemoveAll(dir)
	}
}

func waitQueueEmpty(ctx context.Context, m MTA) (int, error) {
	for {
		q, err := m.Queued(ctx)
		if err == nil && q == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return q, errors.Join(err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitDelivered(ctx context.Context, m MTA, n int64) (int64, error) {
	for {
		d, err := m.Delivered(ctx)
		if err == nil && d >= n {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return d, errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// contend runs the wanted contenders under load in interleaved rounds
// (every contender once per round, in table order) and returns their
// stats; ratios are per round against postfix (and postfix_opendkim for
// the DKIM rows) and the noop, then the median is taken.
func (r *Runner) contend(ctx context.Context, load string, names []string, rounds int) []*contStats {
	all := Contenders()
	var ds *DKIMSetup
	var dsErr error
	if slices.ContainsFunc(names, func(n string) bool { return all[n] != nil && all[n].DKIM }) {
		dir, err := r.runDir("dkim-peers")
		if err == nil {
			defer os.RemoveAll(dir)
			_ = os.Chmod(dir, 0o755)
			ds, dsErr = NewDKIMSetup(dir)
		} else {
			dsErr = err
		}
	}
	var stats []*contStats
	byName := map[string]*contStats{}
	for _, name := range names {
		c := all[name]
		if c == nil {
			continue
		}
		cs := &contStats{c: c, load: load, n: r.contenderN(name)}
		if c.Skip != nil {
			cs.skip = c.Skip(r.mtaOptions("", 0, nil, nil))
		}
		if cs.skip == "" && load == LoadReference && c.NeedsAuth {
			cs.skip = "needs_auth(smtp-source_cannot_authenticate;_see_" + LoadPerConn + ")"
		}
		if cs.skip == "" && c.DKIM && ds == nil {
			cs.skip = fmt.Sprintf("dkim_key:%v", dsErr)
		}
		stats = append(stats, cs)
		byName[name] = cs
	}
	for round := 0; round < rounds && ctx.Err() == nil; round++ {
		rates := map[string]float64{}
		for _, cs := range stats {
			if cs.skip != "" || ctx.Err() != nil {
				continue
			}
			r.logger().Info("contender run", "load", load, "contender", cs.c.Name, "round", round+1, "n", cs.n)
			res, err := r.runContender(ctx, cs.c, load, cs.n, ds)
			if err != nil {
				cs.errs = append(cs.errs, err.Error())
				r.logger().Warn("contender run failed", "load", load, "contender", cs.c.Name, "err", err)
				continue
			}
			msgs := float64(max(res.sink.Messages, 1))
			cs.rates = append(cs.rates, res.rate)
			cs.runs = append(cs.runs, fmt.Sprintf("%.0f", res.rate))
			cs.cpu = append(cs.cpu, float64(res.cpu.Microseconds())/msgs)
			cs.src = append(cs.src, float64(res.cpuSource.Microseconds())/msgs)
			cs.harn = append(cs.harn, float64(res.cpuHarness.Microseconds())/msgs)
			cs.lat = append(cs.lat, res.lat...)
			cs.peakRSS = max(cs.peakRSS, res.peakRSS)
			cs.dkimPass += res.sink.DKIMPass
			cs.dkimMessages += res.sink.Messages
			cs.dups += res.sink.Duplicates
			rates[cs.c.Name] = res.rate
		}
		for _, cs := range stats {
			v, ok := rates[cs.c.Name]
			if !ok {
				continue
			}
			if pf := rates[ContPostfix]; pf > 0 {
				cs.ratioPF = append(cs.ratioPF, v/pf)
			}
			if nr := rates[ContNoop]; nr > 0 {
				cs.ratioNoop = append(cs.ratioNoop, v/nr)
			}
			if pd := rates[ContPostfixDKIM]; pd > 0 && cs.c.DKIM {
				cs.ratioPFDKIM = append(cs.ratioPFDKIM, v/pd)
			}
		}
	}
	return stats
}

// contLine renders a contender's stats as a result line.
func (r *Runner) contLine(scenario string, cs *contStats) *Line {
	l := NewLine(scenario).Set("contender", cs.c.Name).Set("load", cs.load).Set("msgs", cs.n)
	if cs.skip != "" {
		return l.Set("skipped", cs.skip)
	}
	if len(cs.rates) > 0 {
		l.Set("msgs_per_s", Median(cs.rates)).Set("runs", strings.Join(cs.runs, "/"))
		if len(cs.ratioPF) > 0 {
			l.Set("ratio_postfix", Median(cs.ratioPF))
		}
		if len(cs.ratioNoop) > 0 {
			l.Set("ratio_noop", Median(cs.ratioNoop))
		}
		if len(cs.ratioPFDKIM) > 0 {
			l.Set("ratio_postfix_opendkim", Median(cs.ratioPFDKIM))
		}
		if cs.c.Start != nil {
			l.Set("cpu_us_per_msg", Median(cs.cpu))
		}
		l.Set("cpu_source", NewCPUGroupSourceName())
		if cs.load == LoadReference {
			l.Set("source_cpu_us_per_msg", Median(cs.src)).Set("harness_sink_cpu_us_per_msg", Median(cs.harn))
		} else {
			l.Set("harness_loadgen_sink_cpu_us_per_msg", Median(cs.harn))
		}
		if len(cs.lat) > 0 {
			lat := Summarize(slices.Clone(cs.lat))
			l.Set("ack_p50", lat.P50).Set("ack_p99", lat.P99)
		}
		if cs.c.Start != nil {
			l.Set("peak_rss_mb", float64(cs.peakRSS)/(1<<20)).Set("duplicates", cs.dups)
		}
		if cs.c.DKIM {
			l.Set("dkim_verified", fmt.Sprintf("%d/%d", cs.dkimPass, cs.dkimMessages))
		}
		l.Set("checks", "exact_n,no_duplicates,queue_empty,own_log_count")
	}
	l.Set("durability", cs.c.Durability)
	if len(cs.errs) > 0 {
		l.Set("error", strings.Join(cs.errs, ";"))
	}
	return l
}

// NewCPUGroupSourceName says which CPU accounting this machine gives.
func NewCPUGroupSourceName() string {
	g := NewCPUGroup(fmt.Sprintf("probe-%d-%d", os.Getpid(), runSeq.Add(1)))
	defer g.Kill()
	return g.Source
}

// tableRow is one row of the printed comparison table.
type tableRow struct {
	load, name, n, rate, xpf, xnoop, cpu, instr, p50, p99, rss, dur, dkim, repro string
}

// addTableRows keeps the rows of a scenario's stats for the final table.
func (r *Runner) addTableRows(scenario string, stats []*contStats, rounds int) {
	for _, cs := range stats {
		row := tableRow{load: cs.load, name: cs.c.Name, n: fmt.Sprint(cs.n), dur: cs.c.Durability,
			rate: "-", xpf: "-", xnoop: "-", cpu: "-", instr: r.instructionsNote(), p50: "-", p99: "-", rss: "-", dkim: "-"}
		roundsFlag := "-rounds"
		if scenario == ScenarioPerConn {
			roundsFlag = "-perconn-rounds"
		}
		row.repro = fmt.Sprintf("petrel-bench run -scenarios %s -contenders %s -n %d %s %d", scenario, cs.c.Name, cs.n, roundsFlag, max(rounds, 1))
		switch {
		case cs.skip != "":
			row.rate = "skipped: " + cs.skip
		case len(cs.rates) == 0:
			row.rate = "failed: " + firstOr(cs.errs, "no run")
		default:
			row.rate = fmt.Sprintf("%.0f", Median(cs.rates))
			if len(cs.errs) > 0 {
				row.rate += fmt.Sprintf(" (%d failed runs)", len(cs.errs))
			}
			if len(cs.ratioPF) > 0 {
				row.xpf = fmt.Sprintf("%.2f", Median(cs.ratioPF))
				if len(cs.ratioPFDKIM) > 0 {
					row.xpf += fmt.Sprintf(" (%.2f vs pf+dkim)", Median(cs.ratioPFDKIM))
				}
			}
			if len(cs.ratioNoop) > 0 {
				row.xnoop = fmt.Sprintf("%.2f", Median(cs.ratioNoop))
			}
			if cs.c.Start != nil {
				row.cpu = fmt.Sprintf("%.0f", Median(cs.cpu))
				row.rss = fmt.Sprintf("%.0f", float64(cs.peakRSS)/(1<<20))
			} else {
				row.cpu = fmt.Sprintf("(source %.0f, sink %.0f)", Median(cs.src), Median(cs.harn))
			}
			if len(cs.lat) > 0 {
				lat := Summarize(slices.Clone(cs.lat))
				row.p50 = fmt.Sprintf("%.1f", float64(lat.P50)/float64(time.Millisecond))
				row.p99 = fmt.Sprintf("%.1f", float64(lat.P99)/float64(time.Millisecond))
			}
			if cs.c.DKIM {
				row.dkim = fmt.Sprintf("%d/%d", cs.dkimPass, cs.dkimMessages)
			}
		}
		r.table = append(r.table, row)
	}
}

// cell keeps a table cell on one line and short.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 90 {
		s = s[:87] + "..."
	}
	return s
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// instructionsNote is the instructions/msg cell: perf stat needs hardware
// counters, which this kind of VM does not expose (PerfInstructions).
func (r *Runner) instructionsNote() string {
	if r.Instructions != "" {
		return r.Instructions
	}
	return "n/a"
}

// PerfInstructions says whether `perf stat -e instructions` counts here,
// and if not why (the Instructions note of the table).
func PerfInstructions(ctx context.Context) (bool, string) {
	out, err := exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-e", "instructions", "true").CombinedOutput()
	switch {
	case err != nil && len(out) == 0:
		return false, "n/a (no perf)"
	case strings.Contains(string(out), "not supported") || strings.Contains(string(out), "not counted"):
		return false, "n/a (perf: no HW counters in this VM)"
	case err != nil:
		return false, "n/a (perf failed)"
	}
	return true, ""
}

// PrintTable writes the comparison table (one row per contender and load).
func (r *Runner) PrintTable(w io.Writer) {
	if len(r.table) == 0 || w == nil {
		return
	}
	fmt.Fprintf(w, "\n# petrel-bench %s, %d sessions, %d B messages, %d rcpt, %d rounds (median), go %s, postfix %s, CPU from %s\n",
		r.Meta.Commit, r.P.Sessions, r.P.Size, r.P.Recipients, r.P.Rounds, r.Meta.Go, r.Meta.Postfix, NewCPUGroupSourceName())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for i := range r.table {
		if c, ok := r.instr[r.table[i].name]; ok && r.table[i].load != "pipelined" {
			r.table[i].instr = c
		}
	}
	fmt.Fprintln(tw, "load\tcontender\tn\tmsg/s\tx postfix\tx noop\tCPU us/msg\tinstr/msg\tack p50 ms\tack p99 ms\tpeak RSS MB\tdurability\tDKIM verified\treproduce")
	for _, t := range r.table {
		t.rate = cell(t.rate)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.load, t.name, t.n, t.rate, t.xpf, t.xnoop, t.cpu, t.instr, t.p50, t.p99, t.rss, t.dur, t.dkim, t.repro)
	}
	_ = tw.Flush()
}
