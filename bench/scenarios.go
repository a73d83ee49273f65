package bench

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Scenario names, in the order Run executes them.
const (
	// ScenarioRefLoad is the headline: smtp-source, one connection per
	// message, through every contender (LoadReference).
	ScenarioRefLoad = "reference_load"
	// ScenarioPerConn is the same shape from the harness's own load
	// generator: per-message ack latency, and chasquid (AUTH).
	ScenarioPerConn    = "per_connection"
	ScenarioQueue10M   = "queue_10m"
	ScenarioReference  = "reference_tools"
	ScenarioNoop       = "noop"
	ScenarioPetrel     = "petrel_relay"
	ScenarioPostfix    = "postfix_relay"
	ScenarioRatioPF    = "ratio_petrel_postfix"
	ScenarioRatioNoop  = "ratio_petrel_noop"
	ScenarioAckLatency = "ack_latency"
	ScenarioDKIM       = "petrel_relay_dkim"
	ScenarioQueue1M    = "queue_1m"
	ScenarioSummary    = "summary"
)

// AllScenarios lists every scenario Run knows.
var AllScenarios = []string{ScenarioRefLoad, ScenarioPerConn, ScenarioReference, ScenarioNoop, ScenarioPetrel, ScenarioPostfix, ScenarioRatioPF, ScenarioRatioNoop, ScenarioAckLatency, ScenarioDKIM, ScenarioQueue1M, ScenarioQueue10M, ScenarioInstr}

// Params sizes a run.
type Params struct {
	// N messages per throughput run, of Size bytes, with Recipients
	// recipients each, over Sessions connections.
	N, Size, Sessions, Recipients int
	// Rounds of interleaved noop/petrel/postfix runs (median of these).
	Rounds int
	// QueueN is the message count of queue_1m.
	QueueN int
	// DrainLimit bounds how long queue_1m watches the backlog drain.
	DrainLimit time.Duration
	// Contenders of reference_load and per_connection (nil: all).
	Contenders []string
	// PeerN caps the message count of slow contenders (a run of Exim at
	// ~100/s or OpenSMTPD at ~15/s over N would take most of an hour).
	PeerN map[string]int
	// Queue10MMessages × Queue10MRcpts recipients are queued by
	// queue_10m (default 1,000,000 × 10 = 10M recipients), with
	// Queue10MSteps checkpoints of disk use, RSS and injection cost.
	Queue10MMessages, Queue10MRcpts, Queue10MSteps int
	// InstrN messages are counted by instructions_valgrind (default
	// bench.InstrN; negative skips the scenario: -quick, where two runs
	// under valgrind would take most of its time budget).
	InstrN int
	// PerConnRounds is per_connection's round count (default 1: a
	// latency run; more where smtp-source is missing and it is the only
	// one-connection-per-message load).
	PerConnRounds int
}

// QuickParams runs every scenario on a small N (CI smoke test).
func QuickParams() Params {
	return Params{N: 200, Size: 4096, Sessions: 10, Recipients: 1, Rounds: 3, QueueN: 2000, DrainLimit: 10 * time.Second,
		Contenders: QuickContenders, Queue10MMessages: 2000, Queue10MRcpts: 10, Queue10MSteps: 2, InstrN: -1}
}

// FullParams is the reference configuration of issue 3: 20 sessions,
// 20,000 × 4 KiB, one recipient, and 1,000,000 queued messages.
func FullParams() Params {
	return Params{N: 20000, Size: 4096, Sessions: 20, Recipients: 1, Rounds: 3, QueueN: 1_000_000, DrainLimit: 120 * time.Second,
		PeerN:            map[string]int{ContExim: 2000, ContEximDKIM: 2000, ContOpenSMTPD: 500, ContHaraka: 5000, ContChasquid: 2000},
		Queue10MMessages: 1_000_000, Queue10MRcpts: 10, Queue10MSteps: 5}
}

// Meta is stamped on every result line for reproducibility.
type Meta struct {
	Go, Postfix, Commit string
}

// Runner runs scenarios and prints one key=value line per scenario.
type Runner struct {
	P Params
	// Petreld is the petreld binary; empty skips the Petrel scenarios.
	Petreld string
	// PetreldBase is the binary of the petrel_base contender (a build of
	// another commit, for before/after rounds in one invocation).
	PetreldBase string
	// TmpDir holds per-run directories (must be traversable by the postfix
	// user: os.TempDir is fine, t.TempDir is not).
	TmpDir string
	Out    io.Writer
	Log    *slog.Logger
	Meta   Meta
	// ProfileDir, when set, receives a CPU profile of petreld
	// (petreld-cpu.pprof, from its /debug/pprof/profile) taken during the
	// first petrel_relay run, ProfileSeconds long (default 10).
	ProfileDir     string
	ProfileSeconds int
	profiled       bool
	// PeerRoot is where bench/fetch-peers.sh unpacked the Debian peers
	// (default DefaultPeerRoot()); HarakaDir the npm prefix of Haraka
	// (default PeerRoot/haraka).
	PeerRoot, HarakaDir string
	// Instructions is the instructions/msg cell when no counter works.
	Instructions string
	table        []tableRow
	// instr holds instructions/msg cells measured under valgrind, by
	// contender name (reference rows).
	instr map[string]string

	petrelRates, postfixRates, noopRates []float64
	petrelInject, petrelCPU, postfixCPU  []float64
	petrelPerConn                        []float64
	ratioPF, ratioNoop                   []float64
	// petrel_relay_dkim, run as a fourth contender of every round.
	dkimSkip               string
	dkimErr                error
	dkimRates, dkimCPU     []float64
	ratioDKIM              []float64
	dkimRuns               []string
	dkimPass, dkimFail     int64
	dkimNone, dkimMessages int64
	smtpLat                []time.Duration
	peakRSS                int64
	lines                  []*Line
}

func (r *Runner) logger() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// emit stamps the meta fields on l, prints it and keeps it.
func (r *Runner) emit(l *Line) {
	l.Set("size", r.P.Size).Set("concurrency", r.P.Sessions).Set("n", r.P.N).Set("rcpts", r.P.Recipients)
	l.Set("go", r.Meta.Go).Set("postfix", r.Meta.Postfix).Set("commit", r.Meta.Commit)
	if r.Out != nil {
		fmt.Fprintln(r.Out, l.String())
	}
	r.lines = append(r.lines, l)
}

func skipped(name, reason string) *Line { return NewLine(name).Set("skipped", reason) }

// Run executes the named scenarios (nil: all) and a summary; it returns
// every line printed. A scenario that cannot run prints skipped=<reason>;
// one that fails prints error=<text>. The error is only for ctx.
func (r *Runner) Run(ctx context.Context, names []string) ([]*Line, error) {
	if len(names) == 0 {
		names = AllScenarios
	}
	want := func(n string) bool { return slices.Contains(names, n) }
	if r.PeerRoot == "" {
		r.PeerRoot = DefaultPeerRoot()
	}
	if r.Instructions == "" {
		_, r.Instructions = PerfInstructions(ctx)
	}
	conts := r.P.Contenders
	if len(conts) == 0 {
		conts = AllContenders
	}
	for _, sc := range []struct{ name, load string }{{ScenarioRefLoad, LoadReference}, {ScenarioPerConn, LoadPerConn}} {
		if !want(sc.name) {
			continue
		}
		if sc.load == LoadReference && !PostfixInstalled() {
			r.emit(skipped(sc.name, "smtp-source_not_installed"))
			continue
		}
		rounds := r.P.Rounds
		if sc.load == LoadPerConn {
			rounds = max(r.P.PerConnRounds, 1) // a latency run; the rates come from the reference rounds
		}
		stats := r.contend(ctx, sc.load, conts, rounds)
		for _, cs := range stats {
			r.emit(r.contLine(sc.name, cs))
		}
		r.addTableRows(sc.name, stats, rounds)
	}
	if want(ScenarioReference) {
		r.emit(r.reference(ctx))
	}
	if want(ScenarioNoop) || want(ScenarioPetrel) || want(ScenarioPostfix) || want(ScenarioRatioPF) || want(ScenarioRatioNoop) || want(ScenarioDKIM) {
		r.interleaved(ctx, want)
	}
	if want(ScenarioAckLatency) {
		r.emit(r.ackLatency(ctx))
	}
	if want(ScenarioDKIM) {
		r.emit(r.dkim(ctx))
	}
	if want(ScenarioQueue1M) {
		r.emit(r.queue1M(ctx))
	}
	if want(ScenarioQueue10M) {
		for _, l := range r.queue10M(ctx) {
			r.emit(l)
		}
	}
	if want(ScenarioInstr) {
		if r.P.InstrN < 0 {
			r.emit(skipped(ScenarioInstr, "quick"))
		} else {
			for _, l := range r.instructions(ctx) {
				r.emit(l)
			}
		}
	}
	r.emit(r.summary())
	r.PrintTable(r.Out)
	return r.lines, ctx.Err()
}

func (r *Runner) runDir(prefix string) (string, error) {
	d, err := os.MkdirTemp(r.TmpDir, "petrel-bench-"+prefix+"-")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return d, nil
}

// sinkWait is how long a run waits for the last message at the sink.
func (r *Runner) sinkWait(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*10*time.Millisecond
}

func (r *Runner) load(addr string) SMTPLoad {
	return SMTPLoad{Addr: addr, Sessions: r.P.Sessions, Messages: r.P.N, Size: r.P.Size, Recipients: r.P.Recipients}
}

// runResult is one measured end-to-end run.
type runResult struct {
	rate    float64
	load    *LoadResult
	sink    SinkStats
	peakRSS int64
	cpu     time.Duration // petreld CPU time during the run
}

// through sends the load to addr and waits until sink has every message;
// the rate is messages / (last arrival at the sink - first injection).
func (r *Runner) through(ctx context.Context, addr string, sink *Sink, ld SMTPLoad) (runResult, error) {
	res, err := RunSMTP(ctx, ld)
	if err != nil {
		return runResult{}, err
	}
	if res.Accepted != int64(ld.Messages) {
		return runResult{load: res}, fmt.Errorf("only %d of %d accepted (temp %d perm %d errors %d, first: %v)", res.Accepted, ld.Messages, res.TempFailed, res.PermFailed, res.Errors, res.FirstErr)
	}
	wctx, cancel := context.WithTimeout(ctx, r.sinkWait(ld.Messages))
	defer cancel()
	st, err := sink.WaitMessages(wctx, int64(ld.Messages))
	if err != nil {
		return runResult{load: res, sink: st}, fmt.Errorf("%d of %d arrived: %w", st.Messages, ld.Messages, err)
	}
	return runResult{rate: Rate(st.Messages, st.Last.Sub(res.Start)), load: res, sink: st}, nil
}

func (r *Runner) noopRun(ctx context.Context) (runResult, error) {
	sink, err := StartSink(SinkOptions{Logger: r.logger()})
	if err != nil {
		return runResult{}, err
	}
	defer sink.Close()
	return r.through(ctx, sink.Addr(), sink, r.load(sink.Addr()))
}

// petrelRun runs one petreld (fresh data dir) relaying to a fresh sink.
func (r *Runner) petrelRun(ctx context.Context, extra string, so SinkOptions, ld func(addr string) SMTPLoad) (runResult, error) {
	so.Logger = r.logger()
	sink, err := StartSink(so)
	if err != nil {
		return runResult{}, err
	}
	defer sink.Close()
	dir, err := r.runDir("petreld")
	if err != nil {
		return runResult{}, err
	}
	defer os.RemoveAll(dir)
	p, err := StartPetreld(ctx, PetreldOptions{Binary: r.Petreld, Dir: dir, Relay: sink.Addr(), ExtraTOML: extra, Logger: r.logger()})
	if err != nil {
		return runResult{}, err
	}
	var profDone chan struct{}
	if r.ProfileDir != "" && !r.profiled {
		r.profiled = true
		profDone = make(chan struct{})
		go func() {
			defer close(profDone)
			r.profile(ctx, p)
		}()
	}
	cpu0, _ := p.CPU()
	res, err := r.through(ctx, p.SMTPAddr, sink, ld(p.SMTPAddr))
	if cpu1, cerr := p.CPU(); cerr == nil {
		res.cpu = cpu1 - cpu0
	}
	if profDone != nil {
		<-profDone
	}
	_, res.peakRSS, _ = p.Memory()
	if serr := p.Stop(); serr != nil {
		r.logger().Warn("petreld stop", "err", serr)
	}
	if err != nil {
		return res, fmt.Errorf("%w; petreld log: %s", err, p.LogTail(600))
	}
	return res, nil
}

// profile saves a CPU profile of p into ProfileDir.
func (r *Runner) profile(ctx context.Context, p *Petreld) {
	secs := r.ProfileSeconds
	if secs <= 0 {
		secs = 10
	}
	path := filepath.Join(r.ProfileDir, "petreld-cpu.pprof")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.HTTPAddr, secs), nil)
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+p.Key) // profiling needs the API key
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			var b []byte
			if b, err = io.ReadAll(resp.Body); err == nil {
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				} else {
					err = os.WriteFile(path, b, 0o644)
				}
			}
		}
	}
	if err != nil {
		r.logger().Warn("petreld profile", "err", err)
		return
	}
	r.logger().Info("petreld CPU profile written", "path", path)
}

func (r *Runner) postfixRun(ctx context.Context) (runResult, error) {
	sink, err := StartSink(SinkOptions{Logger: r.logger()})
	if err != nil {
		return runResult{}, err
	}
	defer sink.Close()
	dir, err := r.runDir("postfix")
	if err != nil {
		return runResult{}, err
	}
	defer os.RemoveAll(dir)
	pf, err := StartPostfix(ctx, PostfixOptions{Dir: dir, RelayPort: sink.Port(), Logger: r.logger()})
	if err != nil {
		return runResult{}, err
	}
	defer pf.Stop()
	cpu0, _ := pf.CPU()
	res, err := r.through(ctx, pf.Addr(), sink, r.load(pf.Addr()))
	if cpu1, cerr := pf.CPU(); cerr == nil {
		res.cpu = cpu1 - cpu0
	}
	return res, err
}

func (r *Runner) postfixSkip() string {
	switch {
	case !PostfixInstalled():
		return "postfix_not_installed"
	case os.Geteuid() != 0:
		return "private_postfix_needs_root"
	}
	return ""
}

// interleaved runs noop, petrel and postfix in rounds (A B C A B C ...) so
// that machine noise hits all of them alike, then emits the rate lines and
// the median per-round ratios.
func (r *Runner) interleaved(ctx context.Context, want func(string) bool) {
	petrelSkip := ""
	if r.Petreld == "" {
		petrelSkip = "no_petreld_binary"
	}
	pfSkip := r.postfixSkip()
	runNoop := want(ScenarioNoop) || want(ScenarioRatioNoop)
	runPetrel := want(ScenarioPetrel) || want(ScenarioRatioNoop) || want(ScenarioRatioPF)
	runPostfix := want(ScenarioPostfix) || want(ScenarioRatioPF) || want(ScenarioDKIM)
	var ds *DKIMSetup
	if want(ScenarioDKIM) {
		var cleanup func()
		ds, cleanup = r.dkimSetup(ctx)
		defer cleanup()
	}
	var noopErr, petrelErr, pfErr error
	var noopRuns, petrelRuns, pfRuns []string
	for round := 0; round < r.P.Rounds && ctx.Err() == nil; round++ {
		var nr, pr, fr runResult
		var nerr, perr, ferr error = errors.New("not run"), errors.New("not run"), errors.New("not run")
		if runNoop {
			nr, nerr = r.noopRun(ctx)
			if nerr != nil {
				noopErr = nerr
			} else {
				r.noopRates = append(r.noopRates, nr.rate)
				noopRuns = append(noopRuns, fmt.Sprintf("%.0f", nr.rate))
			}
		}
		if runPetrel && petrelSkip == "" {
			pr, perr = r.petrelRun(ctx, "", SinkOptions{}, r.load)
			if perr != nil {
				petrelErr = perr
			} else {
				r.petrelRates = append(r.petrelRates, pr.rate)
				r.petrelInject = append(r.petrelInject, Rate(pr.load.Accepted, pr.load.Duration()))
				r.petrelCPU = append(r.petrelCPU, float64(pr.cpu.Microseconds())/float64(max(pr.sink.Messages, 1)))
				r.petrelPerConn = append(r.petrelPerConn, float64(pr.sink.Messages)/float64(max(pr.sink.Sessions, 1)))
				petrelRuns = append(petrelRuns, fmt.Sprintf("%.0f", pr.rate))
				r.smtpLat = append(r.smtpLat, pr.load.Latencies...)
				r.peakRSS = max(r.peakRSS, pr.peakRSS)
			}
		}
		if runPostfix && pfSkip == "" {
			fr, ferr = r.postfixRun(ctx)
			if ferr != nil {
				pfErr = ferr
			} else {
				r.postfixRates = append(r.postfixRates, fr.rate)
				r.postfixCPU = append(r.postfixCPU, float64(fr.cpu.Microseconds())/float64(max(fr.sink.Messages, 1)))
				pfRuns = append(pfRuns, fmt.Sprintf("%.0f", fr.rate))
			}
		}
		if ds != nil {
			dr, derr := r.petrelRun(ctx, ds.TOML, SinkOptions{DKIMRecords: ds.Records}, r.load)
			if derr != nil {
				r.dkimErr = derr
			} else {
				r.dkimRates = append(r.dkimRates, dr.rate)
				r.dkimCPU = append(r.dkimCPU, float64(dr.cpu.Microseconds())/float64(max(dr.sink.Messages, 1)))
				r.dkimRuns = append(r.dkimRuns, fmt.Sprintf("%.0f", dr.rate))
				r.dkimPass += dr.sink.DKIMPass
				r.dkimFail += dr.sink.DKIMFail
				r.dkimNone += dr.sink.DKIMNone
				r.dkimMessages += dr.sink.Messages
				if ferr == nil && fr.rate > 0 {
					r.ratioDKIM = append(r.ratioDKIM, dr.rate/fr.rate)
				}
			}
		}
		if perr == nil && ferr == nil && fr.rate > 0 {
			r.ratioPF = append(r.ratioPF, pr.rate/fr.rate)
		}
		if perr == nil && nerr == nil && nr.rate > 0 {
			r.ratioNoop = append(r.ratioNoop, pr.rate/nr.rate)
		}
	}
	rateLine := func(name, skip string, rates []float64, runs []string, err error) *Line {
		if skip != "" {
			return skipped(name, skip)
		}
		l := NewLine(name).Set("load", "pipelined_persistent")
		if len(rates) > 0 {
			l.Set("msgs_per_s", Median(rates)).Set("runs", strings.Join(runs, "/"))
		}
		if err != nil {
			l.Set("error", err.Error())
		}
		return l
	}
	if want(ScenarioNoop) {
		r.emit(rateLine(ScenarioNoop, "", r.noopRates, noopRuns, noopErr))
	}
	if want(ScenarioPetrel) {
		l := rateLine(ScenarioPetrel, petrelSkip, r.petrelRates, petrelRuns, petrelErr)
		if petrelSkip == "" {
			lat := Summarize(slices.Clone(r.smtpLat))
			l.Set("inject_per_s", Median(r.petrelInject)).Set("cpu_us_per_msg", Median(r.petrelCPU))
			l.Set("delivery_msgs_per_conn", Median(r.petrelPerConn)).Set("smtp_ack_p50", lat.P50).Set("smtp_ack_p99", lat.P99).Set("peak_rss_mb", float64(r.peakRSS)/(1<<20))
		}
		r.emit(l)
	}
	if want(ScenarioPostfix) {
		l := rateLine(ScenarioPostfix, pfSkip, r.postfixRates, pfRuns, pfErr)
		if len(r.postfixCPU) > 0 {
			l.Set("cpu_us_per_msg", Median(r.postfixCPU))
		}
		r.emit(l)
	}
	ratioLine := func(name string, ratios []float64, skip string) *Line {
		if skip != "" {
			return skipped(name, skip)
		}
		if len(ratios) == 0 {
			return NewLine(name).Set("error", "no_complete_round")
		}
		var s []string
		for _, x := range ratios {
			s = append(s, fmt.Sprintf("%.2f", x))
		}
		return NewLine(name).Set("ratio", Median(ratios)).Set("rounds", strings.Join(s, "/"))
	}
	r.pipelinedRows(petrelSkip, pfSkip)
	if want(ScenarioRatioPF) {
		r.emit(ratioLine(ScenarioRatioPF, r.ratioPF, petrelSkip+pfSkip))
	}
	if want(ScenarioRatioNoop) {
		r.emit(ratioLine(ScenarioRatioNoop, r.ratioNoop, petrelSkip))
	}
}

// pipelinedRows adds the pipelined, persistent-connection load's rows to
// the table.
func (r *Runner) pipelinedRows(petrelSkip, pfSkip string) {
	repro := func(sc string) string {
		return fmt.Sprintf("petrel-bench run -scenarios %s -n %d -rounds %d", sc, r.P.N, r.P.Rounds)
	}
	row := func(name, sc, skip, dur string, rates, cpu, ratioPF, ratioNoop []float64) tableRow {
		t := tableRow{load: "pipelined", name: name, n: fmt.Sprint(r.P.N), rate: "-", xpf: "-", xnoop: "-", cpu: "-", instr: r.instructionsNote(), p50: "-", p99: "-", rss: "-", dur: dur, dkim: "-", repro: repro(sc)}
		switch {
		case skip != "":
			t.rate = "skipped: " + skip
			return t
		case len(rates) == 0:
			t.rate = "failed"
			return t
		}
		t.rate = fmt.Sprintf("%.0f", Median(rates))
		if len(cpu) > 0 {
			t.cpu = fmt.Sprintf("%.0f", Median(cpu))
		}
		if len(ratioPF) > 0 {
			t.xpf = fmt.Sprintf("%.2f", Median(ratioPF))
		}
		if len(ratioNoop) > 0 {
			t.xnoop = fmt.Sprintf("%.2f", Median(ratioNoop))
		}
		return t
	}
	cs := Contenders()
	if len(r.noopRates) > 0 {
		r.table = append(r.table, row(ContNoop, ScenarioNoop, "", cs[ContNoop].Durability, r.noopRates, nil, nil, nil))
	}
	if len(r.petrelRates) > 0 || petrelSkip != "" {
		t := row(ContPetrel, ScenarioPetrel, petrelSkip, cs[ContPetrel].Durability, r.petrelRates, r.petrelCPU, r.ratioPF, r.ratioNoop)
		if len(r.smtpLat) > 0 {
			lat := Summarize(slices.Clone(r.smtpLat))
			t.p50 = fmt.Sprintf("%.1f", float64(lat.P50)/float64(time.Millisecond))
			t.p99 = fmt.Sprintf("%.1f", float64(lat.P99)/float64(time.Millisecond))
			t.rss = fmt.Sprintf("%.0f", float64(r.peakRSS)/(1<<20))
		}
		r.table = append(r.table, t)
	}
	if len(r.postfixRates) > 0 || pfSkip != "" {
		r.table = append(r.table, row(ContPostfix, ScenarioPostfix, pfSkip, cs[ContPostfix].Durability, r.postfixRates, r.postfixCPU, nil, nil))
	}
	if len(r.dkimRates) > 0 {
		t := row(ContPetrelDKIM, ScenarioDKIM, "", cs[ContPetrelDKIM].Durability, r.dkimRates, r.dkimCPU, r.ratioDKIM, nil)
		t.dkim = fmt.Sprintf("%d/%d", r.dkimPass, r.dkimMessages)
		r.table = append(r.table, t)
	}
}

// reference runs Postfix's own tools for cross-checking: smtp-source into
// smtp-sink (the reference no-op figure), smtp-source into our sink, and
// our load generator into smtp-sink.
func (r *Runner) reference(ctx context.Context) *Line {
	if !PostfixInstalled() {
		return skipped(ScenarioReference, "postfix_not_installed")
	}
	l := NewLine(ScenarioReference)
	src := SourceOptions{Sessions: r.P.Sessions, Messages: r.P.N, Size: r.P.Size, Recipients: r.P.Recipients}
	wait := func(ss *SMTPSink, start time.Time) (float64, error) {
		wctx, cancel := context.WithTimeout(ctx, r.sinkWait(r.P.N))
		defer cancel()
		end, err := ss.WaitMessages(wctx, int64(r.P.N))
		return Rate(int64(r.P.N), end.Sub(start)), err
	}
	// smtp-source -> smtp-sink
	if ss, err := StartSMTPSink(ctx); err != nil {
		l.Set("error", err.Error())
	} else {
		src.Addr = ss.Addr()
		start := time.Now()
		if _, err := RunSMTPSource(ctx, src); err != nil {
			l.Set("error", err.Error())
		} else if rate, err := wait(ss, start); err != nil {
			l.Set("error", err.Error())
		} else {
			l.Set("source_to_smtpsink_msgs_per_s", rate)
		}
		ss.Stop()
	}
	// smtp-source -> our sink
	if sink, err := StartSink(SinkOptions{Logger: r.logger()}); err != nil {
		l.Set("error", err.Error())
	} else {
		src.Addr = sink.Addr()
		start := time.Now()
		if _, err := RunSMTPSource(ctx, src); err != nil {
			l.Set("error", err.Error())
		} else if st := sink.Stats(); st.Messages != int64(r.P.N) {
			l.Set("error", fmt.Sprintf("sink_counted_%d_of_%d", st.Messages, r.P.N))
		} else {
			l.Set("source_to_sink_msgs_per_s", Rate(st.Messages, st.Last.Sub(start)))
		}
		sink.Close()
	}
	// loadgen -> smtp-sink
	if ss, err := StartSMTPSink(ctx); err != nil {
		l.Set("error", err.Error())
	} else {
		ld := r.load(ss.Addr())
		if res, err := RunSMTP(ctx, ld); err != nil || res.Accepted != int64(r.P.N) {
			l.Set("error", fmt.Sprintf("loadgen_to_smtpsink: %v %+v", err, res.FirstErr))
		} else if rate, err := wait(ss, res.Start); err != nil {
			l.Set("error", err.Error())
		} else {
			l.Set("loadgen_to_smtpsink_msgs_per_s", rate)
		}
		ss.Stop()
	}
	return l
}

// ackLatency reports SMTP acknowledgement latency (pooled from the
// petrel_relay runs, or one run of its own) and HTTP injection latency
// and end-to-end rate.
func (r *Runner) ackLatency(ctx context.Context) *Line {
	if r.Petreld == "" {
		return skipped(ScenarioAckLatency, "no_petreld_binary")
	}
	l := NewLine(ScenarioAckLatency)
	if len(r.smtpLat) == 0 {
		pr, err := r.petrelRun(ctx, "", SinkOptions{}, r.load)
		if err != nil {
			l.Set("smtp_error", err.Error())
		}
		if pr.load != nil {
			r.smtpLat = append(r.smtpLat, pr.load.Latencies...)
		}
	}
	lat := Summarize(slices.Clone(r.smtpLat))
	l.Set("smtp_p50", lat.P50).Set("smtp_p99", lat.P99).Set("smtp_samples", lat.N)

	sink, err := StartSink(SinkOptions{Logger: r.logger()})
	if err != nil {
		return l.Set("http_error", err.Error())
	}
	defer sink.Close()
	dir, err := r.runDir("petreld-http")
	if err != nil {
		return l.Set("http_error", err.Error())
	}
	defer os.RemoveAll(dir)
	p, err := StartPetreld(ctx, PetreldOptions{Binary: r.Petreld, Dir: dir, Relay: sink.Addr(), Logger: r.logger()})
	if err != nil {
		return l.Set("http_error", err.Error())
	}
	defer func() { _ = p.Stop() }()
	res, err := RunHTTP(ctx, HTTPLoad{BaseURL: "http://" + p.HTTPAddr, Key: p.Key, Sessions: r.P.Sessions, Messages: r.P.N, Size: r.P.Size, Recipients: r.P.Recipients})
	if err != nil || res.Accepted != int64(r.P.N) {
		if err == nil {
			err = fmt.Errorf("%d of %d accepted (temp %d perm %d errors %d): %v", res.Accepted, r.P.N, res.TempFailed, res.PermFailed, res.Errors, res.FirstErr)
		}
		return l.Set("http_error", err.Error())
	}
	hl := Summarize(res.Latencies)
	l.Set("http_p50", hl.P50).Set("http_p99", hl.P99).Set("http_inject_per_s", Rate(res.Accepted, res.Duration()))
	wctx, cancel := context.WithTimeout(ctx, r.sinkWait(r.P.N))
	defer cancel()
	st, err := sink.WaitMessages(wctx, int64(r.P.N))
	if err != nil {
		return l.Set("http_error", fmt.Sprintf("%d_of_%d_delivered", st.Messages, r.P.N))
	}
	return l.Set("http_e2e_msgs_per_s", Rate(st.Messages, st.Last.Sub(res.Start)))
}

// DKIMSetup is a generated RSA-2048 signing key for bench.test: the TOML
// petreld is given and the TXT record the sink verifies with.
type DKIMSetup struct {
	TOML    string
	Records map[string]string
	// KeyPath is the PEM private key (PKCS#8), readable by the peers.
	KeyPath string
}

// NewDKIMSetup writes an RSA-2048 key (PKCS#8 PEM) to dir/bench.key.
func NewDKIMSetup(dir string) (*DKIMSetup, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	path := filepath.Join(dir, "bench.key")
	// 0644: the peers' unprivileged daemons (Exim's delivery process)
	// read it; the key is a throw-away for one run.
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	return &DKIMSetup{
		KeyPath: path,
		TOML:    fmt.Sprintf("[[sending.dkim]]\ndomain = \"bench.test\"\nselector = \"bench\"\nkey_file = %q\nalgorithm = \"rsa\"\n", path),
		Records: map[string]string{
			"bench._domainkey.bench.test": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub),
		},
	}, nil
}

// checkConfig asks petreld whether it accepts extra TOML.
func (r *Runner) checkConfig(ctx context.Context, dir, extra string) error {
	path := filepath.Join(dir, "check.toml")
	cfg := PetreldConfig(filepath.Join(dir, "data"), "127.0.0.1:1", "127.0.0.1:2", "k", "127.0.0.1:3", extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	out, err := exec.CommandContext(ctx, r.Petreld, "-config", path, "-check-config").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(tail(out, 200)))
	}
	return nil
}

// dkimSetup generates the signing key and checks petreld accepts the DKIM
// section; nil (with r.dkimSkip or r.dkimErr set) when it cannot run.
// cleanup removes the key's directory.
func (r *Runner) dkimSetup(ctx context.Context) (*DKIMSetup, func()) {
	none := func() {}
	if r.Petreld == "" {
		r.dkimSkip = "no_petreld_binary"
		return nil, none
	}
	dir, err := r.runDir("dkim")
	if err != nil {
		r.dkimErr = err
		return nil, none
	}
	cleanup := func() { os.RemoveAll(dir) }
	ds, err := NewDKIMSetup(dir)
	if err != nil {
		r.dkimErr = err
		return nil, cleanup
	}
	if err := r.checkConfig(ctx, dir, ds.TOML); err != nil {
		r.dkimSkip = "petreld_has_no_dkim_config:" + err.Error()
		return nil, cleanup
	}
	return ds, cleanup
}

// dkim reports the petrel_relay_dkim runs made in the interleaved rounds:
// median rate, signatures verified at the sink, and the median of the
// per-round ratios to Postfix.
func (r *Runner) dkim(context.Context) *Line {
	if r.dkimSkip != "" {
		return skipped(ScenarioDKIM, r.dkimSkip)
	}
	l := NewLine(ScenarioDKIM)
	if r.dkimErr != nil {
		l.Set("error", r.dkimErr.Error())
	}
	if len(r.dkimRates) == 0 {
		return l
	}
	l.Set("msgs_per_s", Median(r.dkimRates)).Set("runs", strings.Join(r.dkimRuns, "/")).Set("cpu_us_per_msg", Median(r.dkimCPU))
	l.Set("dkim_pass", r.dkimPass).Set("dkim_fail", r.dkimFail).Set("dkim_none", r.dkimNone)
	if r.dkimPass != r.dkimMessages {
		// Not every message carried a valid signature: the figure is not
		// a DKIM figure, so no ratio is claimed.
		return l.Set("skipped", "not_every_message_signed_and_verified")
	}
	if len(r.ratioDKIM) > 0 {
		var rs []string
		for _, x := range r.ratioDKIM {
			rs = append(rs, fmt.Sprintf("%.2f", x))
		}
		l.Set("ratio_petrel_postfix_dkim", Median(r.ratioDKIM)).Set("ratio_rounds", strings.Join(rs, "/"))
	}
	return l
}

// queue1M injects QueueN messages with delivery impossible (relay to a
// closed port), measures injection rate, disk use and RSS, then restarts
// petreld towards a live sink and measures time to first delivery and the
// drain rate.
func (r *Runner) queue1M(ctx context.Context) *Line {
	if r.Petreld == "" {
		return skipped(ScenarioQueue1M, "no_petreld_binary")
	}
	l := NewLine(ScenarioQueue1M).Set("queue_n", r.P.QueueN)
	dir, err := r.runDir("queue")
	if err != nil {
		return l.Set("error", err.Error())
	}
	defer os.RemoveAll(dir)
	closed, err := FreePort()
	if err != nil {
		return l.Set("error", err.Error())
	}
	p, err := StartPetreld(ctx, PetreldOptions{Binary: r.Petreld, Dir: dir, Relay: fmt.Sprintf("127.0.0.1:%d", closed), Logger: r.logger()})
	if err != nil {
		return l.Set("error", err.Error())
	}
	ld := SMTPLoad{Addr: p.SMTPAddr, Sessions: r.P.Sessions, Messages: r.P.QueueN, Size: 512, Recipients: 1}
	res, err := RunSMTP(ctx, ld)
	if err != nil || res.Accepted != int64(r.P.QueueN) {
		_ = p.Stop()
		if err == nil {
			err = fmt.Errorf("%d of %d accepted (temp %d perm %d errors %d): %v", res.Accepted, r.P.QueueN, res.TempFailed, res.PermFailed, res.Errors, res.FirstErr)
		}
		return l.Set("error", err.Error())
	}
	lat := Summarize(res.Latencies)
	rss, hwm, _ := p.Memory()
	du, _ := DiskUsage(p.DataDir)
	l.Set("inject_per_s", Rate(res.Accepted, res.Duration())).Set("inject_p99", lat.P99)
	l.Set("rss_mb", float64(rss)/(1<<20)).Set("peak_rss_mb", float64(hwm)/(1<<20)).Set("disk_mb", float64(du)/(1<<20))
	if err := p.Stop(); err != nil {
		l.Set("stop_error", err.Error())
	}

	return r.restartDelivery(ctx, l, dir, int64(r.P.QueueN))
}

// restartDelivery restarts petreld on dir (a queue of want recipients
// nobody could deliver) towards a live sink, asks for a flush, and
// reports readiness, first delivery after process start, the drain rate
// over DrainLimit and the flush time.
func (r *Runner) restartDelivery(ctx context.Context, l *Line, dir string, want int64) *Line {
	sink, err := StartSink(SinkOptions{Logger: r.logger()})
	if err != nil {
		return l.Set("error", err.Error())
	}
	defer sink.Close()
	p, err := StartPetreld(ctx, PetreldOptions{Binary: r.Petreld, Dir: dir, Relay: sink.Addr(), Logger: r.logger()})
	if err != nil {
		return l.Set("error", "restart: "+err.Error())
	}
	defer func() { _ = p.Stop() }()
	l.Set("ready_s", time.Since(p.Started).Seconds())
	// Recipients deferred less than a retry interval ago wait for their
	// retry time; ask for a retry now, as an operator would after fixing
	// the destination. The flush runs alongside: first delivery is measured
	// from process start whatever the flush is doing.
	type flushResult struct {
		d   time.Duration
		err error
	}
	flushed := make(chan flushResult, 1)
	go func() {
		fctx, cancel := context.WithTimeout(ctx, r.P.DrainLimit+90*time.Second)
		defer cancel()
		t0 := time.Now()
		err := p.API(fctx, "POST", "/api/v1/queue/flush", map[string]any{}, nil)
		flushed <- flushResult{time.Since(t0), err}
	}()
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	first, err := sink.WaitMessages(fctx, 1)
	cancel()
	if err != nil {
		return l.Set("error", "no_delivery_within_60s_after_restart")
	}
	l.Set("first_delivery_s", first.First.Sub(p.Started).Seconds())
	dctx, cancel := context.WithTimeout(ctx, r.P.DrainLimit)
	st, _ := sink.WaitMessages(dctx, want)
	cancel()
	l.Set("drained", st.Messages).Set("drained_rcpts", st.Recipients).Set("drain_per_s", Rate(st.Messages, st.Last.Sub(st.First)))
	select {
	case fr := <-flushed:
		if fr.err != nil {
			l.Set("flush", "error")
			r.logger().Warn("queue flush", "err", fr.err)
		} else {
			l.Set("flush_s", fr.d.Seconds())
		}
	default:
		l.Set("flush", "unfinished")
	}
	_, hwm, _ := p.Memory()
	return l.Set("restart_peak_rss_mb", float64(hwm)/(1<<20))
}

// summary compares the figures against issue 3's targets.
func (r *Runner) summary() *Line {
	l := NewLine(ScenarioSummary)
	check := func(name string, have bool, v, target float64, above bool) {
		if !have {
			l.Set(name, "n/a")
			return
		}
		ok := v >= target
		if !above {
			ok = v < target
		}
		l.Set(name, fmt.Sprintf("%.2f(target_%s%g:%s)", v, map[bool]string{true: ">=", false: "<"}[above], target, map[bool]string{true: "met", false: "missed"}[ok]))
	}
	check("ratio_petrel_postfix", len(r.ratioPF) > 0, Median(r.ratioPF), 8, true)
	check("ratio_petrel_noop", len(r.ratioNoop) > 0, Median(r.ratioNoop), 0.35, true)
	for _, ln := range r.lines {
		switch ln.Scenario {
		case ScenarioDKIM:
			v, ok := ln.Get("ratio_petrel_postfix_dkim")
			check("ratio_petrel_postfix_dkim", ok, atof(v), 4, true)
		case ScenarioQueue1M:
			v, ok := ln.Get("peak_rss_mb")
			check("queue_peak_rss_mb", ok, atof(v), 300, false)
			v, ok = ln.Get("first_delivery_s")
			check("queue_first_delivery_s", ok, atof(v), 5, false)
		}
	}
	return l
}

func atof(s string) float64 {
	var f float64
	_, _ = fmt.Sscan(s, &f)
	return f
}
