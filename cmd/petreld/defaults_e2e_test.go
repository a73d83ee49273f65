package main

import (
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
)

// The fixed addresses of the embedded defaults (`make run`).
const (
	defaultSMTP = "127.0.0.1:2525"
	defaultHTTP = "127.0.0.1:8025"
)

// netnsChildEnv makes TestMain run netnsChild instead of the tests: the
// child process of TestEmbeddedDefaults inside its own network namespace.
const netnsChildEnv = "PETREL_DEFAULTS_NETNS_CHILD"

// TestEmbeddedDefaults checks the embedded defaults without ever touching
// the host's 127.0.0.1:2525 and :8025, where a developer's `make run` may
// be listening:
//
//   - config.Default() names those addresses, ./petrel-data and loopback
//     relay;
//   - a daemon whose config sets nothing but two free listen addresses
//     keeps its data in ./petrel-data, writes api.key (0600), accepts mail
//     from loopback and takes that key;
//   - petreld with no config at all, on the fixed ports, runs in a fresh
//     network namespace (a child process with CLONE_NEWNET; its own
//     loopback, so nothing there can collide), where petrelctl finds the
//     generated key by itself. Where a namespace cannot be made (not root),
//     the host's ports are used if they are free; if they are taken the
//     test skips, except under CI=true, where it fails.
func TestEmbeddedDefaults(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		c := config.Default()
		if c.SMTP.Listen != defaultSMTP || c.HTTP.Listen != defaultHTTP || filepath.Clean(c.DataDir) != "petrel-data" {
			t.Fatalf("defaults: smtp %q http %q data_dir %q; README and `make run` say %s, %s, petrel-data",
				c.SMTP.Listen, c.HTTP.Listen, c.DataDir, defaultSMTP, defaultHTTP)
		}
	})
	t.Run("free ports", func(t *testing.T) {
		dir := t.TempDir()
		smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
		cfg := filepath.Join(dir, "ports.toml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[smtp]\nlisten = %q\n\n[http]\nlisten = %q\n", smtpAddr, httpAddr)), 0o600); err != nil {
			t.Fatal(err)
		}
		checkDefaults(t, dir, smtpAddr, httpAddr, "-config", cfg)
	})
	t.Run("fixed ports", func(t *testing.T) {
		err := runInNetns(t)
		if err == nil {
			return
		}
		t.Logf("no network namespace (%v): using the host's loopback", err)
		for _, a := range []string{defaultSMTP, defaultHTTP} {
			if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
				c.Close()
				testnet.SkipOrFail(t, "%s is in use (a `make run`?) and no network namespace can be made (run as root to test the fixed ports)", a)
			}
		}
		checkDefaults(t, t.TempDir(), defaultSMTP, defaultHTTP)
	})
}

// runInNetns runs netnsChild in a child process (this test binary again,
// dispatched by TestMain) in a new network namespace. It returns an error
// only when the namespace cannot be made; the child's failure fails t.
func runInNetns(t *testing.T) error {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1", binDirEnv+"="+binDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil && strings.Contains(string(out), "netns defaults ok"):
		return nil
	case err == nil || errors.As(err, &exit):
		t.Fatalf("fixed-port defaults in a network namespace: %v\n%s", err, out)
	}
	return err // the namespace (clone) was refused
}

// netnsChild is the child half of TestEmbeddedDefaults: in its own network
// namespace it brings up loopback and runs petreld with no config on the
// fixed ports. It returns the exit code.
func netnsChild() (code int) {
	c := &childT{}
	defer func() {
		if r := recover(); r != nil && r != errChildFatal {
			panic(r)
		}
		if c.failed {
			code = 1
			return
		}
		fmt.Println("netns defaults ok")
	}()
	if err := loopbackUp(); err != nil {
		c.Fatalf("bring up lo in the new namespace: %v", err)
	}
	dir, err := os.MkdirTemp("", "petreld-defaults")
	if err != nil {
		c.Fatal(err)
	}
	defer os.RemoveAll(dir)
	checkDefaults(c, dir, defaultSMTP, defaultHTTP)
	return 0
}

// tester is the part of *testing.T that checkDefaults uses, so that the
// namespace child (which has no *testing.T) can run it too.
type tester interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

var errChildFatal = errors.New("fatal")

// childT reports to stderr; Fatal unwinds (running defers) to netnsChild.
type childT struct{ failed bool }

func (c *childT) Helper() {}
func (c *childT) Fatal(args ...any) {
	c.failed = true
	fmt.Fprintln(os.Stderr, args...)
	panic(errChildFatal)
}
func (c *childT) Fatalf(format string, args ...any) { c.Fatal(fmt.Sprintf(format, args...)) }
func (c *childT) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (c *childT) Failed() bool                      { return c.failed }

// loopbackUp sets the IFF_UP flag of lo (down in a new namespace).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// checkDefaults starts petreld in dir with args (none: embedded defaults)
// listening on smtpAddr and httpAddr, and checks what the defaults
// promise: data in ./petrel-data, a generated api.key (0600), mail
// accepted from loopback, the key accepted and a wrong one refused. On
// the fixed ports petrelctl run in dir must find the key by itself.
func checkDefaults(t tester, dir, smtpAddr, httpAddr string, args ...string) {
	t.Helper()
	for _, a := range []string{smtpAddr, httpAddr} {
		if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("%s is already in use", a)
		}
	}
	cmd := exec.Command(filepath.Join(binDir, "petreld"), args...)
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
		c, err := net.DialTimeout("tcp", httpAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("petreld did not listen on %s", httpAddr)
	}
	msg := "From: a@sender.test\r\nTo: b@example.invalid\r\nSubject: defaults\r\n\r\nhi\r\n"
	if err := smtp.SendMail(smtpAddr, nil, "a@sender.test", []string{"b@example.invalid"}, []byte(msg)); err != nil {
		t.Fatalf("submission on %s: %v", smtpAddr, err)
	}
	keyPath := filepath.Join(dir, "petrel-data", "api.key")
	st, err := os.Stat(keyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "petrel-data", "queue")); err != nil {
		t.Fatalf("queue not under ./petrel-data: %v", err)
	}
	url := "http://" + httpAddr
	ctlArgs := []string{"queue", "stats"}
	if httpAddr != defaultHTTP {
		key, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		ctlArgs = append([]string{"-url", url, "-key", strings.TrimSpace(string(key))}, ctlArgs...)
	}
	ctl := exec.Command(filepath.Join(binDir, "petrelctl"), ctlArgs...)
	ctl.Dir = dir
	ctl.Env = append(os.Environ(), "PETREL_API_KEY=", "PETREL_URL=")
	if out, err := ctl.CombinedOutput(); err != nil {
		t.Fatalf("petrelctl %v with the generated key: %v\n%s", ctlArgs, err, out)
	}
	bad := exec.Command(filepath.Join(binDir, "petrelctl"), "-url", url, "-key", "wrong", "queue", "stats")
	bad.Dir = dir
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("wrong key accepted: %v\n%s", err, out)
	}
}
