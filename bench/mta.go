package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Contender names (the rows of the table). "noop" is the load generator
// straight into the sink.
const (
	ContNoop       = "noop"
	ContPetrel     = "petrel"
	ContPetrelDKIM = "petrel_dkim"
	// ContPetrelBase is petreld built from another commit (-petreld-base),
	// run in the same rounds as petrel for a before/after comparison; never
	// in the default set.
	ContPetrelBase  = "petrel_base"
	ContPostfix     = "postfix"
	ContPostfixDKIM = "postfix_opendkim"
	ContExim        = "exim"
	ContEximDKIM    = "exim_dkim"
	ContOpenSMTPD   = "opensmtpd"
	ContHaraka      = "haraka"
	ContChasquid    = "chasquid"
)

// AllContenders lists every contender in table order.
var AllContenders = []string{ContNoop, ContPetrel, ContPostfix, ContExim, ContOpenSMTPD, ContHaraka, ContChasquid, ContPetrelDKIM, ContPostfixDKIM, ContEximDKIM}

// QuickContenders is bench-quick's set: Petrel against Postfix and the
// no-op, nothing that needs fetching.
var QuickContenders = []string{ContNoop, ContPetrel, ContPostfix}

// MTA is one running contender relaying everything to the sink.
type MTA interface {
	// Addr is the SMTP listener the load goes to.
	Addr() string
	// Queued is how many messages its queue still holds.
	Queued(ctx context.Context) (int, error)
	// Delivered is its own count of successful deliveries (its log or
	// its metrics).
	Delivered(ctx context.Context) (int64, error)
	// Stop ends every process of the instance.
	Stop()
}

// MTAOptions is what a contender is started with.
type MTAOptions struct {
	// Dir is an empty private directory (config, queue, log).
	Dir string
	// SinkPort is the loopback port of the sink everything is relayed to.
	SinkPort int
	// Group accounts the instance's processes.
	Group *CPUGroup
	// DKIM, when set, is the RSA-2048 key the contender signs with.
	DKIM *DKIMSetup
	// Sessions is the load's concurrency (the outbound connection limit
	// the contender is given where it has one).
	Sessions int
	// Petreld is the petreld binary.
	Petreld string
	// PetreldBase is the petrel_base contender's binary (empty: skipped).
	PetreldBase string
	// PeerRoot is where Debian peer packages are unpacked (dpkg -x).
	PeerRoot string
	// HarakaDir is the npm prefix holding node_modules/Haraka.
	HarakaDir string
	Logger    *slog.Logger
}

// Contender describes one row of the comparison.
type Contender struct {
	Name string
	// Durability says whether an acknowledged message was synced to disk
	// before the 250 reply.
	Durability string
	DKIM       bool
	// NeedsAuth: the contender relays only for authenticated clients
	// (smtp-source cannot authenticate; the load generator does AUTH
	// PLAIN over STARTTLS with AuthUser/AuthPass).
	NeedsAuth          bool
	AuthUser, AuthPass string
	// Skip returns why the contender cannot run here ("" when it can).
	Skip  func(o MTAOptions) string
	Start func(ctx context.Context, o MTAOptions) (MTA, error)
}

// DefaultPeerRoot is where `make bench` unpacks the Debian peers
// (bench/fetch-peers.sh): $PETREL_BENCH_PEERS, else
// /var/cache/petrel-bench. Not under $HOME: root's home is 0700 and the
// peers' unprivileged daemons (Exim re-executing itself as Debian-exim)
// must reach their binaries.
func DefaultPeerRoot() string {
	if v := os.Getenv("PETREL_BENCH_PEERS"); v != "" {
		return v
	}
	return "/var/cache/petrel-bench"
}

// Contenders returns the contender table.
func Contenders() map[string]*Contender {
	petrelSkip := func(o MTAOptions) string {
		if o.Petreld == "" {
			return "no_petreld_binary"
		}
		return ""
	}
	pfSkip := func(MTAOptions) string {
		switch {
		case !PostfixInstalled():
			return "postfix_not_installed"
		case os.Geteuid() != 0:
			return "private_postfix_needs_root"
		}
		return ""
	}
	peer := func(bins ...string) func(o MTAOptions) string {
		return func(o MTAOptions) string {
			if os.Geteuid() != 0 {
				return "needs_root"
			}
			for _, b := range bins {
				if _, err := os.Stat(filepath.Join(o.PeerRoot, "root", b)); err != nil {
					return "not_fetched:" + b + "(run_bench/fetch-peers.sh)"
				}
			}
			return ""
		}
	}
	cs := []*Contender{
		{Name: ContNoop, Durability: "n/a (no queue)"},
		{Name: ContPetrel, Durability: "fsync before 250 (Pebble WAL, synced commit)", Skip: petrelSkip, Start: startPetrelMTA},
		{Name: ContPetrelDKIM, Durability: "fsync before 250", DKIM: true, Skip: petrelSkip, Start: startPetrelMTA},
		{Name: ContPetrelBase, Durability: "fsync before 250 (Pebble WAL, synced commit)", Skip: func(o MTAOptions) string {
			if o.PetreldBase == "" {
				return "no_-petreld-base"
			}
			return ""
		}, Start: func(ctx context.Context, o MTAOptions) (MTA, error) {
			o.Petreld = o.PetreldBase
			return startPetrelMTA(ctx, o)
		}},
		{Name: ContPostfix, Durability: "fsync before 250 (cleanup fsyncs the queue file)", Skip: pfSkip, Start: startPostfixMTA},
		{Name: ContPostfixDKIM, Durability: "fsync before 250", DKIM: true, Skip: func(o MTAOptions) string {
			if s := pfSkip(o); s != "" {
				return s
			}
			return peer("usr/sbin/opendkim")(o)
		}, Start: startPostfixMTA},
		{Name: ContExim, Durability: "fsync before 250 (spool -D/-H files; disable_fsync unset)", Skip: peer("usr/sbin/exim4"), Start: startEximMTA},
		{Name: ContEximDKIM, Durability: "fsync before 250", DKIM: true, Skip: peer("usr/sbin/exim4"), Start: startEximMTA},
		{Name: ContOpenSMTPD, Durability: "no fsync before 250 (queue_fs: write + rename)", Skip: peer("usr/sbin/smtpd"), Start: startOpenSMTPD},
		{Name: ContHaraka, Durability: "no fsync before 250 (outbound queue file written, not synced)", Skip: func(o MTAOptions) string {
			if _, err := exec.LookPath("node"); err != nil {
				return "node_not_installed"
			}
			if _, err := os.Stat(filepath.Join(o.HarakaDir, "node_modules", "Haraka", "bin", "haraka")); err != nil {
				return "haraka_not_installed(npm_install_Haraka_into_" + o.HarakaDir + ")"
			}
			return ""
		}, Start: startHaraka},
		{Name: ContChasquid, Durability: "fsync before 250 (safeio: write, fsync, rename)", NeedsAuth: true, AuthUser: "bench@bench.test", AuthPass: "bench-password", Skip: peer("usr/bin/chasquid"), Start: startChasquid},
	}
	m := map[string]*Contender{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

// CountFiles counts regular files under dir (0 when dir does not exist).
func CountFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("count files: %w", err)
	}
	return n, nil
}

// CountLogLines counts the lines of path containing every one of subs.
func CountLogLines(path string, subs ...string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	return countLines(bufio.NewScanner(f), subs...)
}

func countLines(sc *bufio.Scanner, subs ...string) (int64, error) {
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var n int64
next:
	for sc.Scan() {
		for _, s := range subs {
			if !bytes.Contains(sc.Bytes(), []byte(s)) {
				continue next
			}
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("log: %w", err)
	}
	return n, nil
}

// ---- Petrel ----

type petrelMTA struct{ p *Petreld }

func startPetrelMTA(ctx context.Context, o MTAOptions) (MTA, error) {
	extra := ""
	if o.DKIM != nil {
		extra = o.DKIM.TOML
	}
	p, err := StartPetreld(ctx, PetreldOptions{Binary: o.Petreld, Dir: o.Dir, Relay: fmt.Sprintf("127.0.0.1:%d", o.SinkPort), ExtraTOML: extra, Logger: o.Logger, Group: o.Group})
	if err != nil {
		return nil, err
	}
	return petrelMTA{p}, nil
}

func (m petrelMTA) Addr() string { return m.p.SMTPAddr }

// metric reads one sample of petreld's /metrics (name with labels as
// exposed, e.g. `petrel_delivery_attempts_total{outcome="delivered"}`).
func (m petrelMTA) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.p.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("petreld metrics: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+m.p.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("petreld metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("petreld metrics: %s", resp.Status)
	}
	v, ok, err := PromSample(bufio.NewScanner(resp.Body), name)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, nil // a counter never incremented is not exposed
	}
	return v, nil
}

// PromSample finds the sample "name value" in Prometheus text format.
func PromSample(sc *bufio.Scanner, name string) (float64, bool, error) {
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || !strings.HasPrefix(rest, " ") {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric %s: %w", name, err)
		}
		return v, true, nil
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	return 0, false, nil
}

func (m petrelMTA) Queued(ctx context.Context) (int, error) {
	v, err := m.metric(ctx, "petrel_queue_messages")
	return int(v), err
}

func (m petrelMTA) Delivered(ctx context.Context) (int64, error) {
	v, err := m.metric(ctx, `petrel_delivery_attempts_total{outcome="delivered"}`)
	return int64(v), err
}

func (m petrelMTA) Stop() {
	if err := m.p.Stop(); err != nil {
		slog.Default().Debug("petreld stop", "err", err)
	}
}

// ---- Postfix (and Postfix + OpenDKIM) ----

type postfixMTA struct {
	*Postfix
	opendkim *exec.Cmd
}

func startPostfixMTA(ctx context.Context, o MTAOptions) (MTA, error) {
	m := &postfixMTA{}
	po := PostfixOptions{Dir: o.Dir, RelayPort: o.SinkPort, Concurrency: o.Sessions, Logger: o.Logger, Group: o.Group}
	if o.DKIM != nil {
		cmd, addr, err := startOpenDKIM(ctx, o)
		if err != nil {
			return nil, err
		}
		m.opendkim = cmd
		po.Milter = "inet:" + addr
	}
	pf, err := StartPostfix(ctx, po)
	if err != nil {
		m.stopMilter()
		return nil, err
	}
	m.Postfix = pf
	return m, nil
}

func (m *postfixMTA) stopMilter() {
	if m.opendkim != nil && m.opendkim.Process != nil {
		_ = m.opendkim.Process.Kill() // reaped by startOpenDKIM's goroutine
	}
}

func (m *postfixMTA) Stop() {
	m.Postfix.Stop()
	m.stopMilter()
}

// startOpenDKIM runs the Debian opendkim milter from PeerRoot in the
// foreground, signing bench.test with the run's key.
func startOpenDKIM(ctx context.Context, o MTAOptions) (*exec.Cmd, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`Syslog no
Background no
Mode s
Domain bench.test
Selector bench
KeyFile %s
Socket inet:%d@127.0.0.1
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
InternalHosts 127.0.0.0/8
RequireSafeKeys no
UserID root
PidFile %s
`, o.DKIM.KeyPath, port, filepath.Join(o.Dir, "opendkim.pid"))
	path := filepath.Join(o.Dir, "opendkim.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", fmt.Errorf("opendkim: %w", err)
	}
	cmd := o.Group.Command(filepath.Join(o.PeerRoot, "root/usr/sbin/opendkim"), "-f", "-x", path)
	cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+filepath.Join(o.PeerRoot, "root/usr/lib/x86_64-linux-gnu"))
	logf, err := os.Create(filepath.Join(o.Dir, "opendkim.log"))
	if err != nil {
		return nil, "", fmt.Errorf("opendkim: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("opendkim: %w", err)
	}
	o.Group.Started(cmd.Process.Pid)
	go func() { _ = cmd.Wait(); logf.Close() }()
	if err := WaitListening(ctx, addr, 15*time.Second); err != nil {
		_ = cmd.Process.Kill()
		b, _ := os.ReadFile(logf.Name())
		return nil, "", fmt.Errorf("opendkim: %w: %s", err, tail(b, 500))
	}
	return cmd, addr, nil
}
