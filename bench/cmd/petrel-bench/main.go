// Command petrel-bench is Petrel's benchmark driver.
//
//	petrel-bench [run] [-quick] [-scenarios noop,petrel_relay,...] [-petreld BIN]
//	petrel-bench sink [-listen 127.0.0.1:2526] [-stats 127.0.0.1:8026] [-tempfail 0] [-permfail 0]
//	petrel-bench loadgen -addr HOST:PORT [-sessions 20] [-n 20000] [-size 4096] [-rcpts 1] [-starttls]
//	petrel-bench httpload -url http://HOST:PORT -key KEY [-sessions 20] [-n 20000] [-size 4096] [-rcpts 1]
//
// "run" (the default) builds petreld from ./cmd/petreld unless -petreld is
// given, runs the scenarios of issue 3 and prints one key=value line per
// scenario plus a summary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/petrel-mta/petrel/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runScenarios(ctx, args, stdout, stderr)
	case "sink":
		err = runSink(ctx, args, stdout, stderr)
	case "loadgen":
		err = runLoadgen(ctx, args, stdout, stderr)
	case "httpload":
		err = runHTTPLoad(ctx, args, stdout, stderr)
	default:
		err = fmt.Errorf("unknown command %q (run, sink, loadgen, httpload)", cmd)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(stderr, "petrel-bench:", err)
			}
			return 2
		}
		fmt.Fprintln(stderr, "petrel-bench:", err)
		return 1
	}
	return 0
}

// usageError is a command-line error (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func runScenarios(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small N for every scenario (smoke test, under a minute)")
	scen := fs.String("scenarios", "", "comma-separated scenarios (default all: "+strings.Join(bench.AllScenarios, ",")+")")
	petreld := fs.String("petreld", "", "petreld binary (default: go build ./cmd/petreld)")
	n := fs.Int("n", 0, "messages per throughput run")
	size := fs.Int("size", 0, "message size in bytes")
	sessions := fs.Int("sessions", 0, "concurrent sessions")
	rcpts := fs.Int("rcpts", 0, "recipients per message")
	rounds := fs.Int("rounds", 0, "interleaved rounds (median)")
	queueN := fs.Int("queue-n", 0, "messages for queue_1m")
	contenders := fs.String("contenders", "", "comma-separated contenders of reference_load and per_connection (default: all, -quick: "+strings.Join(bench.QuickContenders, ",")+"; known: "+strings.Join(bench.AllContenders, ",")+")")
	peerN := fs.String("peer-n", "", "per-contender message counts, e.g. exim=2000,opensmtpd=500 (caps -n for slow peers)")
	peers := fs.String("peers", "", "where bench/fetch-peers.sh unpacked the peers (default $PETREL_BENCH_PEERS or ~/.cache/petrel-bench)")
	q10m := fs.Int("queue10m-msgs", 0, "messages queued by queue_10m (default 1,000,000; x -queue10m-rcpts recipients)")
	q10mRcpts := fs.Int("queue10m-rcpts", 0, "recipients per message in queue_10m (default 10)")
	perConnRounds := fs.Int("perconn-rounds", 0, "interleaved rounds of per_connection (default 1)")
	petreldBase := fs.String("petreld-base", "", "petreld binary of the petrel_base contender (another commit, for before/after rounds)")
	instrN := fs.Int("instr-n", 0, "messages counted by instructions_valgrind (default 2000; two runs of petreld under valgrind)")
	verbose := fs.Bool("v", false, "debug logging to stderr")
	profDir := fs.String("profile", "", "directory for a petreld CPU profile taken during the first petrel_relay run")
	profSecs := fs.Int("profile-seconds", 10, "length of that profile")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	p := bench.FullParams()
	if *quick {
		p = bench.QuickParams()
	}
	for _, o := range []struct {
		v   int
		dst *int
	}{{*n, &p.N}, {*size, &p.Size}, {*sessions, &p.Sessions}, {*rcpts, &p.Recipients}, {*rounds, &p.Rounds}, {*queueN, &p.QueueN}, {*q10m, &p.Queue10MMessages}, {*q10mRcpts, &p.Queue10MRcpts}, {*instrN, &p.InstrN}, {*perConnRounds, &p.PerConnRounds}} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if *contenders != "" {
		p.Contenders = strings.Split(*contenders, ",")
	}
	if *peerN != "" {
		m, err := parsePeerN(*peerN)
		if err != nil {
			return usageError{err}
		}
		if p.PeerN == nil {
			p.PeerN = map[string]int{}
		}
		for k, v := range m {
			p.PeerN[k] = v
		}
	}
	log := newLogger(stderr, *verbose)
	tmp, err := os.MkdirTemp("", "petrel-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if os.Getenv("PETREL_BENCH_KEEP") == "" { // PETREL_BENCH_KEEP=1 keeps every run directory for debugging
		defer os.RemoveAll(tmp)
	}
	// The postfix user must traverse the run directories.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	bin := *petreld
	if bin == "" {
		bin = filepath.Join(tmp, "petreld")
		b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/petreld")
		if out, err := b.CombinedOutput(); err != nil {
			log.Warn("cannot build petreld; Petrel scenarios will be skipped", "err", err, "out", string(out))
			fmt.Fprintf(stderr, "petrel-bench: building petreld failed, Petrel scenarios skipped:\n%s\n", out)
			bin = ""
		}
	}
	var names []string
	if *scen != "" {
		names = strings.Split(*scen, ",")
	}
	r := &bench.Runner{
		P:           p,
		Petreld:     bin,
		PetreldBase: *petreldBase,
		TmpDir:      tmp,
		Out:         stdout,
		Log:         log,
		Meta:        bench.Meta{Go: runtime.Version(), Postfix: bench.PostfixVersion(ctx), Commit: gitCommit(ctx)},

		PeerRoot:       *peers,
		ProfileDir:     *profDir,
		ProfileSeconds: *profSecs,
	}
	_, err = r.Run(ctx, names)
	return err
}

// parsePeerN parses "name=N,name=N".
func parsePeerN(s string) (map[string]int, error) {
	m := map[string]int{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 || k == "" {
			return nil, fmt.Errorf("-peer-n: %q is not name=N", kv)
		}
		m[k] = n
	}
	return m, nil
}

func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "-dirty"
	}
	return c
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2526", "SMTP listen address")
	stats := fs.String("stats", "127.0.0.1:8026", "HTTP address serving GET /stats (empty: none)")
	temp := fs.Int("tempfail", 0, "per mille of messages answered 451")
	perm := fs.Int("permfail", 0, "per mille of messages answered 554")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	s, err := bench.StartSink(bench.SinkOptions{Addr: *listen, TempFailPermille: *temp, PermFailPermille: *perm, Logger: newLogger(stderr, *verbose)})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "sink listening on %s\n", s.Addr())
	if *stats != "" {
		ln, err := net.Listen("tcp", *stats)
		if err != nil {
			return fmt.Errorf("stats listener: %w", err)
		}
		srv := &http.Server{Handler: s.Handler()}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(stdout, "stats on http://%s/stats\n", ln.Addr())
	}
	<-ctx.Done()
	st := s.Stats()
	fmt.Fprintf(stdout, "messages=%d recipients=%d temp_failed=%d perm_failed=%d\n", st.Messages, st.Recipients, st.TempFailed, st.PermFailed)
	return nil
}

func loadFlags(fs *flag.FlagSet) (sessions, n, size, rcpts *int) {
	sessions = fs.Int("sessions", 20, "concurrent sessions")
	n = fs.Int("n", 20000, "messages")
	size = fs.Int("size", 4096, "message size in bytes")
	rcpts = fs.Int("rcpts", 1, "recipients per message")
	return
}

func report(stdout io.Writer, name string, res *bench.LoadResult) {
	lat := bench.Summarize(res.Latencies)
	l := bench.NewLine(name).Set("accepted", res.Accepted).Set("temp_failed", res.TempFailed).Set("perm_failed", res.PermFailed).Set("errors", res.Errors)
	l.Set("ack_per_s", bench.Rate(res.Accepted, res.Duration())).Set("ack_p50", lat.P50).Set("ack_p99", lat.P99).Set("go", runtime.Version())
	if res.FirstErr != nil {
		l.Set("first_error", res.FirstErr.Error())
	}
	fmt.Fprintln(stdout, l.String())
}

func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:2525", "SMTP server")
	sessions, n, size, rcpts := loadFlags(fs)
	perSession := fs.Int("per-session", 0, "messages per connection (0: unlimited)")
	starttls := fs.Bool("starttls", false, "use STARTTLS")
	noPipe := fs.Bool("no-pipelining", false, "do not pipeline MAIL/RCPT/DATA")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	res, err := bench.RunSMTP(ctx, bench.SMTPLoad{Addr: *addr, Sessions: *sessions, Messages: *n, Size: *size, Recipients: *rcpts, PerSession: *perSession, StartTLS: *starttls, NoPipelining: *noPipe})
	if err != nil {
		return err
	}
	report(stdout, "loadgen_smtp", res)
	return nil
}

func runHTTPLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("httpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8025", "petreld HTTP API base URL")
	key := fs.String("key", "", "API bearer key")
	sessions, n, size, rcpts := loadFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	res, err := bench.RunHTTP(ctx, bench.HTTPLoad{BaseURL: *url, Key: *key, Sessions: *sessions, Messages: *n, Size: *size, Recipients: *rcpts})
	if err != nil {
		return err
	}
	report(stdout, "loadgen_http", res)
	return nil
}
