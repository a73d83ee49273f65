package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PetreldOptions configures one petreld child process.
type PetreldOptions struct {
	// Binary is the petreld executable.
	Binary string
	// Dir holds the config file, the log and data/ (kept across restarts
	// with the same Dir).
	Dir string
	// Relay is the "host:port" every domain is relayed to.
	Relay string
	// ExtraTOML is appended to the generated config (e.g. DKIM sections).
	ExtraTOML string
	// HTTPTOML is added to the config's [http] section (e.g.
	// public_max_conns_per_ip = 64).
	HTTPTOML string
	// Key is the HTTP API key (default "bench-key").
	Key    string
	Logger *slog.Logger
	// Group, when set, accounts petreld's CPU and memory.
	Group *CPUGroup
	// Wrap, when set, is a command prefix petreld runs under (valgrind
	// --tool=cachegrind ... for instructions/msg).
	Wrap []string
}

// Petreld is a running petreld.
type Petreld struct {
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	log      *os.File
	Started  time.Time
	SMTPAddr string
	HTTPAddr string
	DataDir  string
	LogPath  string
	Key      string
}

// PetreldConfig renders the TOML config the harness runs petreld with.
// The shipped "default" shaping rule (10 connections, 100 msgs/s per
// domain: a polite default for unknown receivers) is replaced by one that
// matches the private Postfix's default_destination_concurrency_limit of
// 20 connections and no rate limit, so both relays get the same terms.
func PetreldConfig(dataDir, smtpAddr, httpAddr, key, relay, extra string) string {
	return fmt.Sprintf(`data_dir = %q
hostname = "bench.local"
[log]
level = "warn"
[smtp]
listen = %q
max_recipients = 1000
[http]
listen = %q
[[http.api_keys]]
name = "bench"
key = %q
[delivery]
smtp_port = 25
[[transport]]
domain = "*"
relay = %q
[[shaping.rule]]
name = "default"
connection_limit = 20
enable_tls = "opportunistic"
%s`, dataDir, smtpAddr, httpAddr, key, relay, extra)
}

// StartPetreld writes the config and starts petreld, returning once its
// SMTP port accepts connections.
func StartPetreld(ctx context.Context, o PetreldOptions) (*Petreld, error) {
	if o.Key == "" {
		o.Key = "bench-key"
	}
	sp, err := FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Petreld{
		SMTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sp)),
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)),
		DataDir:  filepath.Join(o.Dir, "data"),
		LogPath:  filepath.Join(o.Dir, "petreld.log"),
		Key:      o.Key,
		done:     make(chan struct{}),
	}
	cfgPath := filepath.Join(o.Dir, "petrel.toml")
	cfg := PetreldConfig(p.DataDir, p.SMTPAddr, p.HTTPAddr, o.Key, o.Relay, o.ExtraTOML)
	if o.HTTPTOML != "" {
		cfg = strings.Replace(cfg, "[[http.api_keys]]", o.HTTPTOML+"\n[[http.api_keys]]", 1)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("petreld: %w", err)
	}
	lf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("petreld: %w", err)
	}
	p.log = lf
	argv := append(append(slices.Clone(o.Wrap), o.Binary), "-config", cfgPath)
	if o.Group != nil {
		p.cmd = o.Group.Command(argv[0], argv[1:]...)
	} else {
		p.cmd = exec.Command(argv[0], argv[1:]...)
	}
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("petreld: start: %w", err)
	}
	if o.Group != nil {
		o.Group.Started(p.cmd.Process.Pid)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := WaitListening(wctx, p.SMTPAddr, 60*time.Second); err != nil {
		p.Kill()
		return nil, fmt.Errorf("petreld not ready (%v): %w; log: %s", p.waitErr, err, p.LogTail(1500))
	}
	return p, nil
}

// Pid is the process id.
func (p *Petreld) Pid() int { return p.cmd.Process.Pid }

// LogTail returns the last n bytes of petreld's log.
func (p *Petreld) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	return tail(b, n)
}

// Memory returns the current and peak resident set size in bytes
// (VmRSS, VmHWM from /proc/<pid>/status).
func (p *Petreld) Memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, 0, fmt.Errorf("petreld memory: %w", err)
	}
	rss, _ = ParseProcStatus(b, "VmRSS")
	hwm, _ = ParseProcStatus(b, "VmHWM")
	return rss, hwm, nil
}

// CPU returns the user+system CPU time petreld has used so far.
func (p *Petreld) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0, fmt.Errorf("petreld cpu: %w", err)
	}
	d, ok := ParseProcStat(b)
	if !ok {
		return 0, errors.New("petreld cpu: unparsable /proc/pid/stat")
	}
	return d, nil
}

// ParseProcStat returns utime+stime from a /proc/<pid>/stat line, in
// USER_HZ (100 Hz, fixed by the Linux ABI) ticks converted to a duration.
func ParseProcStat(stat []byte) (time.Duration, bool) {
	st, ok := parseStat(stat)
	return st.self, ok
}

// procStat is the part of /proc/<pid>/stat the harness uses.
type procStat struct {
	ppid     int
	self     time.Duration // utime + stime
	children time.Duration // cutime + cstime (waited-for children)
}

func parseStat(stat []byte) (procStat, bool) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	// Fields after the command: state(3) ppid(4) ... utime(14) stime(15)
	// cutime(16) cstime(17).
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return procStat{}, false
	}
	num := func(v string) (int64, bool) {
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil && n >= 0 && n <= 1<<32
	}
	var st procStat
	ppid, ok1 := num(f[1])
	ut, ok2 := num(f[11])
	stime, ok3 := num(f[12])
	if !ok1 || !ok2 || !ok3 {
		return procStat{}, false
	}
	st.ppid = int(ppid)
	st.self = time.Duration(ut+stime) * (time.Second / 100)
	if len(f) >= 15 {
		cu, ok4 := num(f[13])
		cs, ok5 := num(f[14])
		if ok4 && ok5 {
			st.children = time.Duration(cu+cs) * (time.Second / 100)
		}
	}
	return st, true
}

// TreeCPU returns the CPU time used by pid, its reaped children and its
// live direct children (a Postfix master and its daemons).
func TreeCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	st, ok := parseStat(b)
	if !ok {
		return 0, errors.New("cpu: unparsable /proc/pid/stat")
	}
	total := st.self + st.children
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return total, fmt.Errorf("cpu: %w", err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cb, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if cst, ok := parseStat(cb); ok && cst.ppid == pid {
			total += cst.self + cst.children
		}
	}
	return total, nil
}

// Stop sends SIGTERM and waits up to 60s, then kills.
func (p *Petreld) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.Kill()
		return errors.New("petreld: did not stop within 60s, killed")
	}
	p.log.Close()
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		return fmt.Errorf("petreld: %w", p.waitErr)
	}
	return nil
}

// Kill ends petreld with SIGKILL and waits for it.
func (p *Petreld) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	p.log.Close()
}

// API calls petreld's HTTP API with the bench key. in (if not nil) is
// sent as JSON and out (if not nil) decoded from a 2xx answer.
func (p *Petreld) API(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("petreld api: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.HTTPAddr+path, body)
	if err != nil {
		return fmt.Errorf("petreld api: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("petreld api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("petreld api %s %s: %s: %s", method, path, resp.Status, tail(b, 300))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("petreld api %s %s: %w", method, path, err)
		}
	}
	return nil
}

// ParseProcStatus returns the value of a "Key:   1234 kB" line of
// /proc/<pid>/status in bytes.
func ParseProcStatus(status []byte, key string) (int64, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		mult := int64(1)
		if len(f) > 1 {
			switch strings.ToLower(f[1]) {
			case "kb":
				mult = 1 << 10
			case "mb":
				mult = 1 << 20
			default:
				return 0, false
			}
		}
		if n > (1<<62)/mult {
			return 0, false
		}
		return n * mult, true
	}
	return 0, false
}

// DiskUsage returns the bytes allocated on disk under dir.
func DiskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("disk usage: %w", err)
	}
	return total, nil
}
