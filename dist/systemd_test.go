package dist

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// unitFile parses a systemd unit into "Section.Key" → values in order.
func unitFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: line %q is not key=value", path, l)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdUnit checks dist/petreld.service: its settings (Type=notify,
// a dedicated user, ExecReload sending SIGHUP, the hardening), that
// systemd-analyze verify accepts it without a warning, its systemd
// exposure score, and then plays the service manager on this machine
// (no systemd runs as PID 1 in the test container, so the unit cannot
// be started for real): it runs the unit's ExecStartPre and ExecStart
// with NOTIFY_SOCKET on a real unixgram socket and checks READY=1 only
// once SMTP and HTTP accept, ExecReload → RELOADING=1 then READY=1, and
// KillSignal → STOPPING=1 and a clean exit.
func TestSystemdUnit(t *testing.T) {
	u := unitFile(t, "petreld.service")
	want := map[string]string{
		"Service.Type": "notify", "Service.User": "petrel", "Service.NoNewPrivileges": "yes",
		"Service.ProtectSystem": "strict", "Service.PrivateTmp": "yes", "Service.ProtectHome": "yes",
		"Service.StateDirectory": "petrel", "Service.ReadWritePaths": "/var/lib/petrel",
		"Service.ExecReload": "/bin/kill -HUP $MAINPID", "Service.KillSignal": "SIGTERM",
		"Service.CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "Install.WantedBy": "multi-user.target",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	sysusers, err := os.ReadFile("petrel.sysusers")
	if err != nil || !strings.Contains(string(sysusers), "u petrel - ") {
		t.Errorf("petrel.sysusers does not create the unit's user: %v %q", err, sysusers)
	}

	// The unit with the installed paths pointing at the test binaries.
	unit, err := os.ReadFile("petreld.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "petreld.service")
	os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/", binDir+"/")), 0o644)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", local).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", local).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for petreld.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Errorf("systemd exposure %.1f, want at most 2.0:\n%s", score, out)
	}
	t.Logf("systemd-analyze security --offline: exposure %s", m[1])

	// Play the service manager.
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "petrel.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\n[smtp]\nlisten = %q\n[http]\nlisten = %q\n", filepath.Join(dir, "data"), smtpAddr, httpAddr)), 0o600)
	argv := func(key string) []string {
		t.Helper()
		v := u["Service."+key]
		if len(v) != 1 {
			t.Fatalf("%s: %q", key, v)
		}
		f := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(v[0], "/usr/local/bin/", binDir+"/"), "/etc/petrel/petrel.toml", cfg))
		return f
	}
	pre := argv("ExecStartPre")
	if out, err := exec.Command(pre[0], pre[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre %q: %v\n%s", pre, err, out)
	}
	start := argv("ExecStart")
	cmd := exec.Command(start[0], start[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("petreld log:\n%s", log.String())
		}
	}()
	// next reads one notification; on READY=1 it checks the listeners at
	// once, before anything else can happen.
	next := func() (string, bool) {
		t.Helper()
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		msg := string(buf[:n])
		up := true
		for _, a := range []string{smtpAddr, httpAddr} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				up = false
				continue
			}
			c.Close()
		}
		return msg, up
	}
	if msg, up := next(); !strings.HasPrefix(msg, "READY=1") || !up {
		t.Fatalf("first notification %q (listeners up: %v), want READY=1 with SMTP and HTTP accepting", msg, up)
	}
	reload := argv("ExecReload")
	for i, a := range reload {
		reload[i] = strings.ReplaceAll(a, "$MAINPID", strconv.Itoa(cmd.Process.Pid))
	}
	if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v\n%s", reload, err, out)
	}
	if msg, _ := next(); !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after ExecReload: %q, want RELOADING=1 with MONOTONIC_USEC", msg)
	}
	if msg, _ := next(); !strings.HasPrefix(msg, "READY=1") {
		t.Fatalf("after RELOADING: %q, want READY=1", msg)
	}
	if !testnet.Wait(10*time.Second, func() bool { return strings.Contains(log.String(), "SIGHUP: shaping rules reloaded") }) {
		t.Fatal("SIGHUP did not reload")
	}
	cmd.Process.Signal(syscall.SIGTERM) // KillSignal
	if msg, _ := next(); !strings.HasPrefix(msg, "STOPPING=1") {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", msg)
	}
	stop, _ := time.ParseDuration(strings.TrimSuffix(u["Service.TimeoutStopSec"][0], "s") + "s")
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("petreld exit: %v", err)
		}
	case <-time.After(stop):
		t.Fatalf("petreld did not stop within TimeoutStopSec %s", stop)
	}
}
