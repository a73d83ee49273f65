package dist

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// binDir holds petreld, petrelctl and petrel-sendmail built for the tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "petrel-dist")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	b := exec.Command("go", "build", "-o", dir+"/", "github.com/petrel-mta/petrel/cmd/petreld",
		"github.com/petrel-mta/petrel/cmd/petrelctl", "github.com/petrel-mta/petrel/cmd/petrel-sendmail")
	b.Stderr = os.Stderr
	if err := b.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// child starts a binary from binDir in dir and stops it (SIGTERM) at
// the end of the test, logging its output if the test failed.
func child(t *testing.T, dir string, env []string, name string, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// waitListen waits until every address accepts TCP connections.
func waitListen(t *testing.T, addrs ...string) {
	t.Helper()
	if !testnet.Wait(20*time.Second, func() bool {
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	}) {
		t.Fatalf("%v not listening", addrs)
	}
}

// daemon is a running petreld with its own DNS server and MX port.
type daemon struct {
	smtp, http, key string
	dns             *testnet.DNS
	mxPort          int
	log             *syncBuffer
}

// startDaemon runs petreld on free ports with a loopback DNS server and
// recipient MX hosts at mxPort; extra is appended to the config.
func startDaemon(t *testing.T, extra string) *daemon {
	t.Helper()
	return startDaemonSMTP(t, "", extra)
}

// startDaemonSMTP is startDaemon with smtpExtra added to the [smtp]
// section.
func startDaemonSMTP(t *testing.T, smtpExtra, extra string) *daemon {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	port, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dm := &daemon{smtp: freeAddr(t), http: freeAddr(t), key: "dist-test-key", dns: d, mxPort: port}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "petrel.test"

[smtp]
listen = %q
%s
[http]
listen = %q

[[http.api_keys]]
name = "test"
key = %q

[dns]
resolver = %q
timeout = "2s"

[delivery]
smtp_port = %d
retry_schedule = ["1s", "2s"]
connect_timeout = "2s"
shutdown_timeout = "5s"
%s`, filepath.Join(dir, "data"), dm.smtp, smtpExtra, dm.http, dm.key, d.Addr, port, extra)
	path := filepath.Join(dir, "petrel.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dm.log = child(t, dir, nil, "petreld", "-config", path)
	waitListen(t, dm.smtp, dm.http)
	return dm
}

// mx starts a recipient MX host for domain on 127.0.0.n.
func (dm *daemon) mx(t *testing.T, n int, domain string) *testnet.MX {
	t.Helper()
	host := fmt.Sprintf("mx%d.%s", n, domain)
	m, err := testnet.StartMX(testnet.MXOptions{Addr: fmt.Sprintf("127.0.0.%d:%d", n, dm.mxPort), Domain: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dm.dns.Add(fmt.Sprintf("%s. 60 IN MX 10 %s.", domain, host), fmt.Sprintf("%s. 60 IN A 127.0.0.%d", host, n))
	return m
}

// metrics returns petreld's /metrics text.
func (dm *daemon) metrics(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+dm.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+dm.key) // in case /metrics wants the key
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b.String())
	}
	return b.String()
}
