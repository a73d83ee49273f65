package main

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestFlushDomainAndFlushOnStart: with half an hour between retries, deferred
// mail of a recovered domain goes out on `petrelctl queue flush --domain`
// (and only that domain's), and the rest right after a restart with
// -flush-on-start.
func TestFlushDomainAndFlushOnStart(t *testing.T) {
	e := newEnv(t)
	var up atomic.Bool
	script := testnet.MXScript{OnRcpt: func(string, int) error {
		if up.Load() {
			return nil
		}
		return testnet.Reply(451, "4.3.0", "try later")
	}}
	mxA := e.mx(1, "a.test", script)
	mxB := e.mx(2, "b.test", script)
	e.start()
	e.stop()
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	slow := strings.Replace(string(cfg), `retry_schedule = ["1s", "2s"]`, `retry_schedule = ["30m"]`, 1)
	if slow == string(cfg) {
		t.Fatal("retry_schedule not found in the test config")
	}
	if err := os.WriteFile(e.cfgPath, []byte(slow), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	for i := range 3 {
		for _, d := range []string{"a.test", "b.test"} {
			if err := e.sendSMTP("s@sender.test", []string{fmt.Sprintf("r%d@%s", i, d)}, "Subject: f\r\n\r\nhi\r\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "6 deferred", func() bool { return e.queueStats().Deferred == 6 })
	up.Store(true)

	out, err := e.ctl("queue", "flush", "--domain", "A.test")
	if err != nil || !strings.Contains(out, "flush: 3 recipient(s)") {
		t.Fatalf("queue flush --domain: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "a.test's deferred mail delivered", func() bool { return mxA.Count() == 3 })
	time.Sleep(time.Second)
	if n := mxB.Count(); n != 0 {
		t.Fatalf("b.test got %d messages from a flush of a.test", n)
	}
	if out, err := e.ctl("queue", "flush", "--domain"); err == nil {
		t.Fatalf("flush --domain without a domain succeeded:\n%s", out)
	}
	var resp struct {
		Affected int `json:"affected"`
	}
	if code, err := e.api("POST", "/api/v1/queue/flush", map[string]any{"domain": "nothing.test"}, &resp); err != nil || code != 200 || resp.Affected != 0 {
		t.Fatalf("API flush of a domain with nothing deferred: %d %+v %v", code, resp, err)
	}

	// b.test's mail is due in half an hour; a restart with -flush-on-start
	// sends it now.
	e.stop()
	e.flags = []string{"-flush-on-start"}
	e.start()
	waitFor(t, 10*time.Second, "b.test's deferred mail delivered after -flush-on-start", func() bool { return mxB.Count() == 3 })
	waitFor(t, 5*time.Second, "an empty queue", func() bool { return e.queueStats().Live == 0 })
	e.stop()
}
