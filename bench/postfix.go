package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PostfixVersion returns the installed Postfix's mail_version, or "none".
func PostfixVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "postconf", "-d", "-h", "mail_version").Output()
	if err != nil {
		return "none"
	}
	return strings.TrimSpace(string(out))
}

// PostfixInstalled reports whether postfix, smtp-source and smtp-sink are
// on PATH.
func PostfixInstalled() bool {
	for _, p := range []string{"postfix", "postconf", "smtp-source", "smtp-sink"} {
		if _, err := exec.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// PostfixOptions configures a private Postfix instance.
type PostfixOptions struct {
	// Dir is an empty directory for the instance (config, queue, data,
	// log). Its mode is set to 0711 so the postfix user can traverse it.
	Dir string
	// RelayPort is the loopback port of the relay host (the sink).
	RelayPort int
	// Concurrency is default_destination_concurrency_limit (default 20).
	Concurrency int
	Logger      *slog.Logger
	// Group, when set, accounts every Postfix daemon's CPU and memory.
	Group *CPUGroup
	// Milter, when set, is smtpd_milters (e.g. "inet:127.0.0.1:PORT" of
	// an OpenDKIM signing milter).
	Milter string
}

// Postfix is a throw-away Postfix instance listening on a loopback port
// and relaying everything to 127.0.0.1:RelayPort.
type Postfix struct {
	cfgDir   string
	queueDir string
	logDir   string
	addr     string
	log      *slog.Logger
}

// StartPostfix writes a private configuration under o.Dir and starts the
// instance with "postfix -c DIR start". It must run as root.
func StartPostfix(ctx context.Context, o PostfixOptions) (*Postfix, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	cfgDir := filepath.Join(dir, "config")
	queueDir := filepath.Join(dir, "queue")
	dataDir := filepath.Join(dir, "data")
	logDir := filepath.Join(dir, "log")
	// The temp dir and every parent must be traversable by postfix/nobody.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	for _, d := range []string{cfgDir, queueDir, dataDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
	}
	// data_directory must belong to mail_owner.
	if u, err := user.Lookup("postfix"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dataDir, uid, gid); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, fmt.Errorf("postfix: reading the shipped master.cf: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := os.WriteFile(filepath.Join(cfgDir, "master.cf"), PrivateMasterCF(master, addr), 0o644); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
maillog_file = %[3]s/postfix.log
maillog_file_prefixes = %[3]s
myhostname = postfix.bench.local
mydomain = bench.local
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:%[4]d
default_destination_concurrency_limit = %[5]d
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
`, queueDir, dataDir, logDir, o.RelayPort, o.Concurrency)
	if o.Milter != "" {
		main += fmt.Sprintf("smtpd_milters = %s\nmilter_default_action = tempfail\nmilter_protocol = 6\n", o.Milter)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	p := &Postfix{cfgDir: cfgDir, queueDir: queueDir, logDir: logDir, addr: addr, log: log}
	start := exec.CommandContext(ctx, "postfix", "-c", cfgDir, "start")
	if o.Group != nil {
		start = o.Group.Command("postfix", "-c", cfgDir, "start")
	}
	if out, err := start.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix: start: %w: %s", err, out)
	}
	if err := WaitListening(ctx, addr, 20*time.Second); err != nil {
		p.Stop()
		logTail, _ := os.ReadFile(filepath.Join(logDir, "postfix.log"))
		return nil, fmt.Errorf("postfix: not listening: %w; log: %s", err, tail(logTail, 2000))
	}
	return p, nil
}

// Addr is the instance's SMTP listener.
func (p *Postfix) Addr() string { return p.addr }

// CPU returns the CPU time used so far by the instance's master, its
// exited daemons and its live daemons.
func (p *Postfix) CPU() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(p.queueDir, "pid", "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("postfix cpu: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("postfix cpu: master.pid: %w", err)
	}
	return TreeCPU(pid)
}

// Stop runs "postfix -c DIR stop"; it never fails the caller.
func (p *Postfix) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "postfix", "-c", p.cfgDir, "stop").CombinedOutput(); err != nil {
		p.log.Warn("postfix stop", "err", err, "out", string(out))
	}
}

// PrivateMasterCF rewrites a shipped master.cf for a private instance:
// every service runs without chroot, and the "smtp inet" listener moves
// to listen (host:port).
func PrivateMasterCF(shipped []byte, listen string) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(shipped))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 8 || strings.HasPrefix(line, "#") || line[0] == ' ' || line[0] == '\t' {
			out.WriteString(line)
			out.WriteByte('\n')
			continue
		}
		if f[0] == "smtp" && f[1] == "inet" {
			f[0] = listen
		}
		f[4] = "n"
		out.WriteString(strings.Join(f, " "))
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// FreePort returns a currently unused loopback TCP port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening polls addr until a TCP connection succeeds.
func WaitListening(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, errors.Join(ctx.Err(), err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SourceOptions runs Postfix's smtp-source.
type SourceOptions struct {
	Addr       string
	Sessions   int
	Messages   int
	Size       int
	Recipients int
	// PerConnection opens one connection per message (smtp-source without
	// -d: the reference load, as most applications connect); otherwise
	// each session's connection is kept open (-d).
	PerConnection bool
	// Group, when set, accounts smtp-source's CPU.
	Group *CPUGroup
}

// SourceArgs is smtp-source's command line for o.
func SourceArgs(o SourceOptions) []string {
	args := []string{"-s", strconv.Itoa(max(o.Sessions, 1)), "-m", strconv.Itoa(o.Messages),
		"-l", strconv.Itoa(max(o.Size, 1)), "-r", strconv.Itoa(max(o.Recipients, 1))}
	if !o.PerConnection {
		args = append(args, "-d")
	}
	return append(args, "-f", "bench@bench.test", "-t", "rcpt@sink.test", "-M", "source.bench.test", o.Addr)
}

// RunSMTPSource runs smtp-source against o.Addr and returns how long it
// ran.
func RunSMTPSource(ctx context.Context, o SourceOptions) (time.Duration, error) {
	args := SourceArgs(o)
	cmd := exec.CommandContext(ctx, "smtp-source", args...)
	if o.Group != nil {
		cmd = o.Group.CommandContext(ctx, "smtp-source", args...)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("smtp-source: %w: %s", err, tail(out, 500))
	}
	return d, nil
}

// SMTPSink is a running Postfix smtp-sink whose message counter is read
// from its -c output.
type SMTPSink struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	ctr  SinkCounter
}

// StartSMTPSink starts smtp-sink on a free loopback port (as root it runs
// with -u nobody).
func StartSMTPSink(ctx context.Context) (*SMTPSink, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"-c", "-h", "smtp-sink.bench.test"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, addr, "256")
	cmd := exec.CommandContext(ctx, "smtp-sink", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	s := &SMTPSink{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.ctr.Consume(stdout)
	}()
	if err := WaitListening(ctx, addr, 10*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Addr is smtp-sink's listener.
func (s *SMTPSink) Addr() string { return s.addr }

// Messages is smtp-sink's running message counter.
func (s *SMTPSink) Messages() int64 { return s.ctr.Messages() }

// WaitMessages polls the counter until it reaches n and returns the time
// it was first seen there.
func (s *SMTPSink) WaitMessages(ctx context.Context, n int64) (time.Time, error) {
	st, err := waitCount(ctx, func() (SinkStats, bool) {
		m := s.ctr.Messages()
		return SinkStats{Messages: m}, m >= n
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("smtp-sink at %d of %d: %w", st.Messages, n, err)
	}
	return time.Now(), nil
}

// Stop kills smtp-sink and waits for it.
func (s *SMTPSink) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.done
	_ = s.cmd.Wait()
}

// SinkCounter parses smtp-sink -c output: records "sess=N quit=N mesg=N"
// separated by CR or LF. It keeps the highest message count seen.
type SinkCounter struct {
	mesg atomic.Int64
	mu   sync.Mutex
}

// Messages returns the latest message count.
func (c *SinkCounter) Messages() int64 { return c.mesg.Load() }

// Consume reads r until EOF, updating the counter after every record.
func (c *SinkCounter) Consume(r io.Reader) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	br := bufio.NewReaderSize(r, 4096)
	var rec []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			c.record(rec)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("smtp-sink output: %w", err)
		}
		if b == '\r' || b == '\n' {
			c.record(rec)
			rec = rec[:0]
			continue
		}
		if len(rec) < 256 {
			rec = append(rec, b)
		}
	}
}

func (c *SinkCounter) record(rec []byte) {
	if n, ok := ParseSinkRecord(rec); ok && n > c.mesg.Load() {
		c.mesg.Store(n)
	}
}

// ParseSinkRecord extracts the mesg=N count of one smtp-sink -c record.
func ParseSinkRecord(rec []byte) (int64, bool) {
	for _, f := range strings.Fields(string(rec)) {
		v, ok := strings.CutPrefix(f, "mesg=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// Queued counts the queue files left in the instance's incoming, active,
// deferred, hold and maildrop queues.
func (p *Postfix) Queued(context.Context) (int, error) {
	n := 0
	for _, q := range []string{"incoming", "active", "deferred", "hold", "maildrop"} {
		c, err := CountFiles(filepath.Join(p.queueDir, q))
		if err != nil {
			return n, fmt.Errorf("postfix queue: %w", err)
		}
		n += c
	}
	return n, nil
}

// Delivered counts "status=sent" lines in the instance's log.
func (p *Postfix) Delivered(context.Context) (int64, error) {
	return CountLogLines(filepath.Join(p.logDir, "postfix.log"), "status=sent")
}
