package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScenarioInstr counts petreld's instructions per message under
// valgrind (deterministic; this VM has no hardware counters for perf
// stat). The tool is cachegrind with its simulations off (it counts the
// same Ir as callgrind): callgrind 3.19 aborts on the signals a Go
// process takes (threads.c:247, vgCallgrind_post_signal), and Go's
// asynchronous preemption (SIGURG) is turned off for the run
// (GODEBUG=asyncpreemptoff=1). The load is the reference load's shape (one connection per message,
// 4 KiB, 20 sessions) from smtp-source when Postfix is installed, else
// from the harness's generator in the same shape (-per-session 1
// -no-pipelining), into the harness's sink.
const ScenarioInstr = "instructions_valgrind"

// InstrN is the default message count of ScenarioInstr. A GC cycle of
// petreld costs ~10^8 instructions, so 300 messages (~3×10^8) gave
// ±15% between runs of one binary; 2,000 make the cycles' count
// proportional to the load.
const InstrN = 2000

// instrWarm messages go through petreld before the counted ones in
// both runs, so start-up and first-use costs cancel out.
const instrWarm = 50

// ValgrindIr sums the instruction totals ("summary:" or "totals:" lines,
// the Ir event) of every cachegrind or callgrind output file in dir (one
// per process).
func ValgrindIr(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*grind.out.*"))
	if err != nil {
		return 0, fmt.Errorf("valgrind: %w", err)
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("valgrind: no output in %s", dir)
	}
	var total int64
	for _, f := range files {
		ir, err := valgrindFileIr(f)
		if err != nil {
			return 0, err
		}
		total += ir
	}
	return total, nil
}

func valgrindFileIr(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("valgrind: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var summary, totals int64 = -1, -1
	for sc.Scan() {
		line := sc.Text()
		for _, p := range []struct {
			prefix string
			dst    *int64
		}{{"summary:", &summary}, {"totals:", &totals}} {
			rest, ok := strings.CutPrefix(line, p.prefix)
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				continue
			}
			v, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("valgrind %s: %s: %w", path, line, err)
			}
			*p.dst = v
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("valgrind %s: %w", path, err)
	}
	switch {
	case totals >= 0:
		return totals, nil
	case summary >= 0:
		return summary, nil
	}
	return 0, fmt.Errorf("valgrind %s: no summary or totals line", path)
}

// instructions measures petreld's instructions per message: two runs
// under valgrind, each from start to a clean stop: warm-up plus n
// messages, then warm-up plus as long idle as the n messages took; the
// difference over n is the cost of a message (start-up, warm-up and the
// background loops' time-driven polling cancel out).
// With PetreldBase set, petrel_base is measured the same way.
func (r *Runner) instructions(ctx context.Context) []*Line {
	if r.Petreld == "" {
		return []*Line{skipped(ScenarioInstr, "no_petreld_binary")}
	}
	if _, err := exec.LookPath("valgrind"); err != nil {
		return []*Line{skipped(ScenarioInstr, "valgrind_not_installed")}
	}
	bins := []struct{ name, bin string }{{ContPetrel, r.Petreld}}
	if r.PetreldBase != "" {
		bins = append(bins, struct{ name, bin string }{ContPetrelBase, r.PetreldBase})
	}
	var lines []*Line
	for _, b := range bins {
		lines = append(lines, r.instructionsOf(ctx, b.name, b.bin))
	}
	return lines
}

func (r *Runner) instructionsOf(ctx context.Context, name, bin string) *Line {
	l := NewLine(ScenarioInstr)
	n := InstrN
	if r.P.InstrN > 0 {
		n = r.P.InstrN
	}
	source := "smtp-source"
	if !PostfixInstalled() {
		source = "loadgen_per_connection"
	}
	l.Set("contender", name).Set("messages", n).Set("warmup", instrWarm).Set("source", source)
	start := time.Now()
	full, loadTime, err := r.instrRun(ctx, bin, instrWarm, n, 0)
	if err != nil {
		return l.Set("error", err.Error())
	}
	// The idle run lasts as long as the counted load did, so the
	// background loops' polling (50 times as frequent per message under
	// valgrind as natively) cancels out.
	base, _, err := r.instrRun(ctx, bin, instrWarm, 0, loadTime)
	if err != nil {
		return l.Set("error", err.Error())
	}
	per := float64(full-base) / float64(n)
	l.Set("instr_per_msg", per).Set("ir_idle_run", base).Set("ir_full_run", full).Set("load_s", loadTime.Seconds()).Set("wall_s", time.Since(start).Seconds())
	if r.instr == nil {
		r.instr = map[string]string{}
	}
	r.instr[name] = fmt.Sprintf("%.0f (cachegrind, %s)", per, source)
	return l
}

// instrRun starts petreld under cachegrind, sends warm then n messages
// (each batch waited for at the sink) or, with n = 0, stays idle for idle
// after the warm-up, stops it and returns its Ir and how long the n
// messages took to reach the sink.
func (r *Runner) instrRun(ctx context.Context, bin string, warm, n int, idle time.Duration) (int64, time.Duration, error) {
	dir, err := r.runDir("instr")
	if err != nil {
		return 0, 0, err
	}
	defer removeAll(dir)
	out := filepath.Join(dir, "cg")
	if err := os.Mkdir(out, 0o755); err != nil {
		return 0, 0, fmt.Errorf("valgrind: %w", err)
	}
	sink, err := StartSink(SinkOptions{Logger: r.logger(), CheckDuplicates: true})
	if err != nil {
		return 0, 0, err
	}
	defer sink.Close()
	p, err := StartPetreld(ctx, PetreldOptions{Binary: bin, Dir: dir, Relay: sink.Addr(), Logger: r.logger(),
		Wrap: []string{"env", "GODEBUG=asyncpreemptoff=1", "valgrind", "--tool=cachegrind", "--cache-sim=no", "--branch-sim=no",
			"--cachegrind-out-file=" + filepath.Join(out, "cachegrind.out.%p")}})
	if err != nil {
		return 0, 0, err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Kill()
		}
	}()
	sent := 0
	var loadTime time.Duration
	for k, batch := range []int{warm, n} {
		if batch <= 0 {
			continue
		}
		t0 := time.Now()
		if err := r.instrLoad(ctx, p.SMTPAddr, batch); err != nil {
			return 0, 0, err
		}
		sent += batch
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second+time.Duration(batch)*200*time.Millisecond)
		st, err := sink.WaitMessages(wctx, int64(sent))
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("valgrind: %d of %d at the sink: %w", st.Messages, sent, err)
		}
		if k == 1 {
			loadTime = time.Since(t0)
		}
	}
	if idle > 0 {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(idle):
		}
	}
	stopped = true
	if err := p.Stop(); err != nil {
		return 0, 0, err
	}
	if st := sink.Stats(); st.Messages != int64(sent) || st.Duplicates != 0 {
		return 0, 0, fmt.Errorf("valgrind: sink has %d messages (%d duplicates), sent %d", st.Messages, st.Duplicates, sent)
	}
	ir, err := ValgrindIr(out)
	return ir, loadTime, err
}

// instrLoad sends n messages of the reference load's shape.
func (r *Runner) instrLoad(ctx context.Context, addr string, n int) error {
	if PostfixInstalled() {
		_, err := RunSMTPSource(ctx, SourceOptions{Addr: addr, Sessions: r.P.Sessions, Messages: n, Size: r.P.Size, Recipients: r.P.Recipients, PerConnection: true})
		return err
	}
	res, err := RunSMTP(ctx, SMTPLoad{Addr: addr, Sessions: r.P.Sessions, Messages: n, Size: r.P.Size, Recipients: r.P.Recipients, PerSession: 1, NoPipelining: true})
	if err != nil {
		return err
	}
	if res.Accepted != int64(n) {
		return errors.Join(fmt.Errorf("valgrind load: %d of %d accepted", res.Accepted, n), res.FirstErr)
	}
	return nil
}
