package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The peers run from packages unpacked with dpkg -x under PeerRoot/root
// (bench/fetch-peers.sh), each with a private config, spool and log in
// its run directory, listening on a free loopback port and relaying to
// the sink. Nothing is installed as a system service and port 25 is never
// used. Every process a peer starts is in its CPUGroup, killed at Stop.

func peerLibEnv(o MTAOptions) string {
	return "LD_LIBRARY_PATH=" + filepath.Join(o.PeerRoot, "root/usr/lib/x86_64-linux-gnu")
}

// ensureUser creates a system user the peer's binary was built to run as
// (Debian's maintainer scripts would have; dpkg -x does not).
func ensureUser(ctx context.Context, name string) (uid, gid int, err error) {
	if _, err := user.Lookup(name); err != nil {
		out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("useradd %s: %w: %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// procMTA is a peer run as one foreground process tree.
type procMTA struct {
	addr      string
	cmd       *exec.Cmd
	done      chan struct{}
	group     *CPUGroup
	queued    func(ctx context.Context) (int, error)
	delivered func(ctx context.Context) (int64, error)
	logPath   string
}

func (m *procMTA) Addr() string                                 { return m.addr }
func (m *procMTA) Queued(ctx context.Context) (int, error)      { return m.queued(ctx) }
func (m *procMTA) Delivered(ctx context.Context) (int64, error) { return m.delivered(ctx) }

func (m *procMTA) Stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
		}
	}
	m.group.Kill()
	<-m.done
}

// startProc starts cmd (built with o.Group.Command) logging to logPath and
// waits until addr listens.
func startProc(ctx context.Context, o MTAOptions, cmd *exec.Cmd, addr, logPath string) (*procMTA, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("peer %s: %w", cmd.Path, err)
	}
	o.Group.Started(cmd.Process.Pid)
	m := &procMTA{addr: addr, cmd: cmd, done: make(chan struct{}), group: o.Group, logPath: logPath}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(m.done)
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := WaitListening(wctx, addr, 30*time.Second); err != nil {
		m.Stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("peer not listening: %w; log: %s", err, tail(b, 1500))
	}
	return m, nil
}

// ---- Exim 4 ----

// EximConfig renders a private Exim configuration: listen on port,
// relay everything from loopback to 127.0.0.1:sinkPort, spool and logs
// under dir. dkimKey, when set, turns on Exim's built-in DKIM signing
// for bench.test (selector bench).
func EximConfig(dir, eximPath string, port, sinkPort, maxParallel int, dkimKey string) string {
	dkim := ""
	if dkimKey != "" {
		dkim = fmt.Sprintf("  dkim_domain = bench.test\n  dkim_selector = bench\n  dkim_private_key = %s\n  dkim_canon = relaxed\n  dkim_strict = true\n", dkimKey)
	}
	return fmt.Sprintf(`exim_path = %[2]s
keep_environment = LD_LIBRARY_PATH
primary_hostname = exim.bench.local
spool_directory = %[1]s/spool
log_file_path = %[1]s/log/%%slog
pid_file_path = %[1]s/exim.pid
daemon_smtp_ports = %[3]d
local_interfaces = 127.0.0.1
hostlist relay_from_hosts = 127.0.0.0/8
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
rfc1413_hosts =
smtp_accept_max = 200
smtp_accept_queue_per_connection = 0
remote_max_parallel = %[5]d
queue_run_max = %[5]d
tls_advertise_hosts =
message_size_limit = 64M

begin acl
acl_check_rcpt:
  accept hosts = +relay_from_hosts
  deny message = relay not permitted

begin routers
to_sink:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = remote_smtp
  self = send
  no_more

begin transports
remote_smtp:
  driver = smtp
  port = %[4]d
  allow_localhost
  hosts_avoid_tls = *
%[6]s
begin retry
* * F,10m,30s

begin rewrite
`, dir, eximPath, port, sinkPort, maxParallel, dkim)
}

func startEximMTA(ctx context.Context, o MTAOptions) (MTA, error) {
	uid, gid, err := ensureUser(ctx, "Debian-exim")
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("exim: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("exim: %w", err)
	}
	for _, d := range []string{"spool", "log"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, fmt.Errorf("exim: %w", err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, fmt.Errorf("exim: %w", err)
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(o.PeerRoot, "root/usr/sbin/exim4")
	key := ""
	if o.DKIM != nil {
		key = o.DKIM.KeyPath
	}
	cfgPath := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(cfgPath, []byte(EximConfig(dir, bin, port, o.SinkPort, max(o.Sessions, 1), key)), 0o644); err != nil {
		return nil, fmt.Errorf("exim: %w", err)
	}
	cmd := o.Group.Command(bin, "-C", cfgPath, "-bdf", "-q1m")
	cmd.Env = append(cmd.Env, peerLibEnv(o))
	m, err := startProc(ctx, o, cmd, fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "exim.out"))
	if err != nil {
		return nil, fmt.Errorf("exim: %w", err)
	}
	m.queued = func(ctx context.Context) (int, error) {
		c := exec.CommandContext(ctx, bin, "-C", cfgPath, "-bpc")
		c.Env = append(os.Environ(), peerLibEnv(o))
		out, err := c.Output()
		if err != nil {
			return 0, fmt.Errorf("exim -bpc: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			return 0, fmt.Errorf("exim -bpc: %q", out)
		}
		return n, nil
	}
	m.delivered = func(context.Context) (int64, error) {
		return CountLogLines(filepath.Join(dir, "log", "mainlog"), " => ")
	}
	return m, nil
}

// ---- OpenSMTPD ----

// OpenSMTPDConfig renders smtpd.conf: listen on port, relay everything
// from loopback to the sink.
func OpenSMTPDConfig(port, sinkPort int) string {
	return fmt.Sprintf(`listen on 127.0.0.1 port %d hostname opensmtpd.bench.local
action "sink" relay host smtp://127.0.0.1:%d
match from local for any action "sink"
`, port, sinkPort)
}

// startOpenSMTPD runs smtpd -d in a private mount namespace in which the
// run directory is bind-mounted over its compiled-in spool
// /var/spool/smtpd and the unpacked package over /usr/sbin/smtpd's
// helpers, so the instance shares nothing with the system.
func startOpenSMTPD(ctx context.Context, o MTAOptions) (MTA, error) {
	for _, u := range []string{"opensmtpd", "opensmtpq"} {
		if _, _, err := ensureUser(ctx, u); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opensmtpd: %w", err)
	}
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o711); err != nil {
		return nil, fmt.Errorf("opensmtpd: %w", err)
	}
	// Mount points for its compiled-in paths (empty directories; the
	// private ones are bound over them inside the namespace only).
	for _, d := range []string{"/var/spool/smtpd", "/var/lib/opensmtpd/empty", "/usr/libexec/opensmtpd"} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("opensmtpd: mount point: %w", err)
		}
	}
	run := filepath.Join(dir, "run")
	empty := filepath.Join(dir, "empty")
	for _, d := range []string{run, empty} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opensmtpd: %w", err)
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "smtpd.conf")
	if err := os.WriteFile(cfgPath, []byte(OpenSMTPDConfig(port, o.SinkPort)), 0o644); err != nil {
		return nil, fmt.Errorf("opensmtpd: %w", err)
	}
	root := filepath.Join(o.PeerRoot, "root")
	script := `set -e
mount --make-rprivate /
mount --bind "$SPOOL" /var/spool/smtpd
mount --bind "$EMPTY" /var/lib/opensmtpd/empty
mount --bind "$RUN" /var/run
mount --bind "$ROOT/usr/libexec/opensmtpd" /usr/libexec/opensmtpd
exec "$ROOT/usr/sbin/smtpd" -d -f "$CFG"`
	cmd := o.Group.Command("unshare", "--mount", "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Env, "SPOOL="+spool, "EMPTY="+empty, "RUN="+run, "ROOT="+root, "CFG="+cfgPath, peerLibEnv(o))
	logPath := filepath.Join(dir, "smtpd.log")
	m, err := startProc(ctx, o, cmd, fmt.Sprintf("127.0.0.1:%d", port), logPath)
	if err != nil {
		return nil, fmt.Errorf("opensmtpd: %w", err)
	}
	m.queued = func(context.Context) (int, error) {
		// One envelope file per recipient in queue/<bucket>/<msgid>/.
		return CountFiles(filepath.Join(spool, "queue"))
	}
	m.delivered = func(context.Context) (int64, error) {
		return CountLogLines(logPath, "mta delivery", `result="Ok"`)
	}
	return m, nil
}

// ---- Haraka ----

// HarakaConfig returns Haraka's config files (name → content): listen on
// port, relay for loopback (relay plugin ACL) and route every domain to
// the sink (relay force_routing), outbound concurrency limited like the
// others.
func HarakaConfig(port, sinkPort, concurrency int) map[string]string {
	return map[string]string{
		"smtp.ini":               fmt.Sprintf("[main]\nlisten=127.0.0.1:%d\nnodes=0\n", port),
		"me":                     "haraka.bench.local\n",
		"plugins":                "relay\n",
		"relay.ini":              "[relay]\nacl=true\nforce_routing=true\ndest_domains=false\n",
		"relay_acl_allow":        "127.0.0.0/8\n",
		"relay_dest_domains.ini": fmt.Sprintf("[domains]\nany = { \"action\": \"accept\", \"nexthop\": \"127.0.0.1:%d\" }\n", sinkPort),
		"outbound.ini":           fmt.Sprintf("concurrency_max=%d\nenable_tls=false\n", concurrency),
		"log.ini":                "[main]\nlevel=notice\ntimestamps=false\n",
		"internalcmd_key":        "bench\n",
		"databytes":              "67108864\n",
	}
}

func startHaraka(ctx context.Context, o MTAOptions) (MTA, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// Haraka reads its defaults (connection.ini's greeting, ...) from the
	// instance's config dir: start from the shipped files, then override.
	shipped := filepath.Join(o.HarakaDir, "node_modules", "Haraka", "config")
	ents, err := os.ReadDir(shipped)
	if err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(shipped, e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(cfgDir, e.Name()), b, 0o644)
		}
		if err != nil {
			return nil, fmt.Errorf("haraka: %w", err)
		}
	}
	for name, body := range HarakaConfig(port, o.SinkPort, max(o.Sessions, 1)) {
		if body == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(body), 0o644); err != nil {
			return nil, fmt.Errorf("haraka: %w", err)
		}
	}
	bin := filepath.Join(o.HarakaDir, "node_modules", "Haraka", "bin", "haraka")
	cmd := o.Group.Command("node", bin, "-c", dir)
	cmd.Dir = dir
	logPath := filepath.Join(dir, "haraka.log")
	m, err := startProc(ctx, o, cmd, fmt.Sprintf("127.0.0.1:%d", port), logPath)
	if err != nil {
		return nil, fmt.Errorf("haraka: %w", err)
	}
	m.queued = func(context.Context) (int, error) {
		n, err := CountFiles(filepath.Join(dir, "queue"))
		return n, err
	}
	m.delivered = func(context.Context) (int64, error) {
		return CountLogLines(logPath, "[outbound]", "delivered")
	}
	return m, nil
}

// ---- chasquid ----

// ChasquidConfig renders chasquid.conf for a private instance.
func ChasquidConfig(dir string, smtpPort, subPort, tlsPort int) string {
	return fmt.Sprintf(`hostname: "chasquid.bench.local"
smtp_address: "127.0.0.1:%d"
submission_address: "127.0.0.1:%d"
submission_over_tls_address: "127.0.0.1:%d"
data_dir: "%s/data"
mail_log_path: "%s/mail.log"
`, smtpPort, subPort, tlsPort, dir, dir)
}

// startChasquid runs chasquid with a private config dir: bench.test is a
// local domain with one user (the load generator authenticates as it on
// the submission port, over STARTTLS with a throw-away certificate, since
// chasquid relays only for authenticated users), and outgoing SMTP goes
// to the sink's port (chasquid's -testing__outgoing_smtp_port). chasquid
// looks up the recipients' MX: it runs in a private mount namespace whose
// /etc/resolv.conf points at a DNS server of the harness on 127.0.0.1:53
// (MX of every name: mx.sink.test) and whose /etc/hosts maps mx.sink.test
// to 127.0.0.1.
func startChasquid(ctx context.Context, o MTAOptions) (MTA, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("chasquid: %w", err)
	}
	dnsSrv, err := startMXServer("127.0.0.1:53", "mx.sink.test.")
	if err != nil {
		return nil, fmt.Errorf("chasquid: resolver for its MX lookups: %w", err)
	}
	cfg := filepath.Join(dir, "config")
	for _, d := range []string{filepath.Join(cfg, "certs", "chasquid.bench.local"), filepath.Join(cfg, "domains", "bench.test"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			dnsSrv.close()
			return nil, fmt.Errorf("chasquid: %w", err)
		}
	}
	if err := writeSelfSigned(filepath.Join(cfg, "certs", "chasquid.bench.local"), "chasquid.bench.local"); err != nil {
		dnsSrv.close()
		return nil, fmt.Errorf("chasquid: %w", err)
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			dnsSrv.close()
			return nil, err
		}
	}
	files := map[string]string{
		filepath.Join(cfg, "chasquid.conf"): ChasquidConfig(dir, ports[0], ports[1], ports[2]),
		filepath.Join(dir, "hosts"):         "127.0.0.1 localhost mx.sink.test\n",
		filepath.Join(dir, "resolv.conf"):   "nameserver 127.0.0.1\n",
	}
	for p, b := range files {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			dnsSrv.close()
			return nil, fmt.Errorf("chasquid: %w", err)
		}
	}
	root := filepath.Join(o.PeerRoot, "root")
	c := Contenders()[ContChasquid]
	if out, err := exec.CommandContext(ctx, filepath.Join(root, "usr/bin/chasquid-util"), "-C="+cfg, "user-add", c.AuthUser, "--password="+c.AuthPass).CombinedOutput(); err != nil {
		dnsSrv.close()
		return nil, fmt.Errorf("chasquid-util user-add: %w: %s", err, out)
	}
	script := `set -e
mount --make-rprivate /
mount --bind "$DIR/hosts" /etc/hosts
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
exec "$ROOT/usr/bin/chasquid" -config_dir "$DIR/config" -testing__outgoing_smtp_port "$SINKPORT" -logfile "$DIR/chasquid.log"`
	cmd := o.Group.Command("unshare", "--mount", "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Env, "DIR="+dir, "ROOT="+root, "SINKPORT="+strconv.Itoa(o.SinkPort))
	m, err := startProc(ctx, o, cmd, fmt.Sprintf("127.0.0.1:%d", ports[1]), filepath.Join(dir, "chasquid.out"))
	if err != nil {
		dnsSrv.close()
		return nil, fmt.Errorf("chasquid: %w", err)
	}
	m.queued = func(context.Context) (int, error) { return CountFiles(filepath.Join(dir, "data", "queue")) }
	m.delivered = func(context.Context) (int64, error) {
		return CountLogLines(filepath.Join(dir, "mail.log"), " sent")
	}
	return &chasquidMTA{procMTA: m, dns: dnsSrv}, nil
}

type chasquidMTA struct {
	*procMTA
	dns *mxServer
}

func (m *chasquidMTA) Stop() {
	m.procMTA.Stop()
	m.dns.close()
}
