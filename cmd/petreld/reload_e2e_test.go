package main

import (
	"fmt"
	"net/smtp"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestSIGHUPReloadReachesEvents: after a real SIGHUP to a real petreld
// that changed the marketing pool's source, an asynchronous "about us"
// bounce report is applied by the shaping automation to the new source
// (events asks shaping, which answers from the reloaded rules), not to
// the one petreld started with.
func TestSIGHUPReloadReachesEvents(t *testing.T) {
	e := newEnv(t)
	mx1 := e.mx(2, "one.test", testnet.MXScript{})
	mx2 := e.mx(3, "two.test", testnet.MXScript{})
	bounceAddr := freeAddr(t)
	e.extra = fmt.Sprintf(`
[bounce]
domain = "bounce.petrel.test"
secret = "verp-secret"
listen = %q

[shaping]
streams = { marketing = "mkt" }

[[shaping.automation]]
regex = "poor reputation"
action = "suspend"
duration = "1h"

[[shaping.pool]]
name = "mkt"
[[shaping.pool.source]]
name = "before"
`, bounceAddr)
	e.start()

	suspended := func() map[string]bool {
		var st struct {
			Actions []struct{ Action, Source, Key string } `json:"actions"`
		}
		if code, err := e.api("GET", "/api/v1/policy/status", nil, &st); err != nil || code != 200 {
			t.Fatalf("policy status: %d %v", code, err)
		}
		got := map[string]bool{}
		for _, a := range st.Actions {
			if a.Action == "suspend" {
				got[a.Source+" "+a.Key] = true
			}
		}
		return got
	}
	aboutUs := func(mx *testnet.MX, rcpt string) {
		t.Helper()
		if err := e.sendSMTP("news@sender.test", []string{rcpt},
			"From: news@sender.test\r\nTo: "+rcpt+"\r\nX-Petrel-Stream: marketing\r\nSubject: sale\r\n\r\nbuy\r\n"); err != nil {
			t.Fatal(err)
		}
		rp := returnPathOf(t, mx, 1)
		dsn := report(t, "dsn", "TO", rp, "RP", rp, "RCPT", rcpt, "ACTION", "failed", "STATUS", "5.7.1",
			"DIAG", "550 5.7.1 Service unavailable; client host blocked; poor reputation")
		if err := smtp.SendMail(bounceAddr, nil, "", []string{rp}, dsn); err != nil {
			t.Fatalf("send DSN: %v", err)
		}
	}

	aboutUs(mx1, "zoe@one.test")
	waitFor(t, 10*time.Second, "suspension of source before for one.test", func() bool { return suspended()["before default:one.test"] })

	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfgPath, []byte(strings.Replace(string(cfg), `name = "before"`, `name = "after"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload", func() bool { return strings.Contains(e.logBuf.String(), "SIGHUP: shaping rules reloaded") })

	aboutUs(mx2, "amy@two.test")
	waitFor(t, 10*time.Second, "suspension of source after for two.test", func() bool { return suspended()["after default:two.test"] })
	if got := suspended(); got["before default:two.test"] {
		t.Fatalf("the report after the reload also suspended the removed source: %v", got)
	}
	if from := mx2.Mails()[0].From; !strings.HasSuffix(from, "@bounce.petrel.test") {
		t.Fatalf("second mail's return path %q is not VERP", from)
	}
}
