package testnet

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rspamdConf is a private rspamd: the packaged rules ($CONFDIR), its own
// run/db/log directories, workers on loopback ports, no DNS beyond a
// dead loopback resolver (tests reach nothing else), and a hyperscan
// cache shared between runs (compiling it takes minutes).
const rspamdConf = `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    hs_cache_dir = "%s";
    dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "warning"; }
worker "normal" { bind_socket = "127.0.0.1:%d"; .include "$CONFDIR/worker-normal.inc"; count = 1; }
worker "controller" { bind_socket = "127.0.0.1:%d"; .include "$CONFDIR/worker-controller.inc"; count = 1; }
`

// Rspamd starts a private rspamd (/usr/bin/rspamd, or $PETREL_TEST_RSPAMD)
// for t and returns the base URL of its normal worker (POST /checkv2);
// it is stopped when t ends. Without rspamd t is skipped (failed under
// CI, where .ci/run installs it).
func Rspamd(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("PETREL_TEST_RSPAMD")
	if bin == "" {
		bin = "/usr/bin/rspamd"
	}
	if _, err := os.Stat(bin); err != nil {
		SkipOrFail(t, "rspamd not installed: %v", err)
	}
	dir := t.TempDir()
	cache := filepath.Join(os.TempDir(), "petrel-rspamd-hs-cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	normal, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	controller, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "rspamd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, rspamdConf, cache, normal, controller), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", "-c", conf, "--var=RUNDIR=" + dir, "--var=DBDIR=" + dir, "--var=LOGDIR=" + dir, "--var=LOCAL_CONFDIR=" + filepath.Join(dir, "local")}
	if os.Geteuid() == 0 {
		args = append(args, "-i", "-u", "root", "-g", "root")
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rspamd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", normal)
	// A cold start compiles the hyperscan databases: minutes on a busy
	// machine; later starts take seconds.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := http.Get(url + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "rspamd.log"))
			t.Fatalf("rspamd exited: %s\n%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "rspamd.log"))
			t.Fatalf("rspamd not ready after 5 minutes: %s\n%.4000s", out.String(), log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
