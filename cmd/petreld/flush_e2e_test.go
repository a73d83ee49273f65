package main

import (
	"fmt"
	"io"
	"net/http"
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

// TestDeadHostVisible: while a destination's only MX refuses
// connections, `petrelctl queue list` says until when it is marked down
// and the metrics count it.
func TestDeadHostVisible(t *testing.T) {
	e := newEnv(t)
	e.dns.Add("down.test. 60 IN MX 10 mx.down.test.", "mx.down.test. 60 IN A 127.0.0.3") // nothing listens
	e.start()
	for i := range 3 {
		if err := e.sendSMTP("s@sender.test", []string{fmt.Sprintf("r%d@down.test", i)}, "Subject: d\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "3 deferred", func() bool { return e.queueStats().Deferred == 3 })
	out, err := e.ctl("queue", "list")
	if err != nil {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	if n := strings.Count(out, "marked down until 20"); n < 2 {
		t.Fatalf("queue list shows %d recipients deferred as marked down, want at least 2:\n%s", n, out)
	}
	req, _ := http.NewRequest("GET", "http://"+e.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\npetrel_delivery_hosts_down 1\n", "\npetrel_delivery_host_down_deferrals_total "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}
