package main

import (
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestEmbeddedDefaults starts petreld with no config file at all, as
// `make run` does: it listens on 127.0.0.1:2525 and :8025, keeps its data
// in ./petrel-data, accepts mail from loopback, and petrelctl run in the
// same directory authenticates with the generated ./petrel-data/api.key
// (mode 0600) without being given a key. Another client's wrong key is
// refused.
func TestEmbeddedDefaults(t *testing.T) {
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:8025"} {
		if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("%s is already in use: the embedded defaults need it free", a)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "petreld"))
	cmd.Dir = dir
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("petreld log:\n%s", log.String())
		}
	}()
	if !testnet.Wait(20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:8025", 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatal("petreld on embedded defaults did not listen on 127.0.0.1:8025")
	}
	msg := "From: a@sender.test\r\nTo: b@example.invalid\r\nSubject: defaults\r\n\r\nhi\r\n"
	if err := smtp.SendMail("127.0.0.1:2525", nil, "a@sender.test", []string{"b@example.invalid"}, []byte(msg)); err != nil {
		t.Fatalf("submission on 127.0.0.1:2525: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, "petrel-data", "api.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "petrel-data", "queue")); err != nil {
		t.Fatalf("queue not under ./petrel-data: %v", err)
	}
	ctl := exec.Command(filepath.Join(binDir, "petrelctl"), "queue", "stats")
	ctl.Dir = dir
	ctl.Env = append(os.Environ(), "PETREL_API_KEY=", "PETREL_URL=")
	if out, err := ctl.CombinedOutput(); err != nil {
		t.Fatalf("petrelctl with the generated key: %v\n%s", err, out)
	}
	bad := exec.Command(filepath.Join(binDir, "petrelctl"), "-key", "wrong", "queue", "stats")
	bad.Dir = dir
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("wrong key accepted: %v\n%s", err, out)
	}
}
