package events

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
)

// TestAsyncAboutUsFeedsAutomation: an asynchronous bounce about our
// reputation suppresses nobody but reaches the real shaper, whose
// automation rule then suspends sending to that destination.
func TestAsyncAboutUsFeedsAutomation(t *testing.T) {
	sc := config.Default().Shaping
	sc.Automation = append(sc.Automation, config.AutomationRule{Regex: "poor reputation", Action: config.ActionSuspend,
		Duration: config.Duration{Duration: time.Hour}, Threshold: 1})
	cfg := config.Default()
	cfg.Shaping = sc
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, testBounceConfig(), nil)
	w.shaping = cfg.Shaping
	if err := w.svc.Close(); err != nil {
		t.Fatal(err)
	}
	w.open(nil) // again, with a shaper that has the automation rule
	sh := w.sh
	ctx := context.Background()
	dest := mta.Dest{Domain: "example.test", MXHost: "mx.example.test", Stream: "marketing"}
	permit, err := sh.AcquireConn(ctx, dest)
	if err != nil {
		t.Fatalf("AcquireConn before the report: %v", err)
	}
	permit.Release()

	id := w.enqueue("marketing", "zoe@example.test")
	rp := w.verp.Encode(id, 0)
	raw := dsn(rp, "zoe@example.test", "failed", "5.7.1", "550 5.7.1 Service unavailable; client host blocked using Spamhaus; poor reputation")
	if err := w.svc.Handle(ctx, rp, raw); err != nil {
		t.Fatal(err)
	}
	if evs := w.events("bounced"); len(evs) != 1 || evs[0].Reason != "badreputation" {
		t.Fatalf("bounced events = %+v, want one badreputation", evs)
	}
	if w.suppressed("marketing", "zoe@example.test") {
		t.Fatal("a bounce about our reputation suppressed the recipient")
	}
	_, err = sh.AcquireConn(ctx, dest)
	var pe *mta.PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("AcquireConn after the report = %v, want the automation's suspension", err)
	}
}

// TestAboutUsFollowsShapingReload: the egress sources an "about us"
// report is applied to are the stream's pool under the shaping rules in
// force, so after Reload (SIGHUP) a report reaches the new pool's
// sources and no longer the removed ones.
func TestAboutUsFollowsShapingReload(t *testing.T) {
	pools := func(src string) config.ShapingConfig {
		c, err := config.Parse("test.toml", []byte(`
[shaping]
streams = { marketing = "mkt" }
[[shaping.automation]]
regex = "poor reputation"
action = "suspend"
duration = "1h"
[[shaping.pool]]
name = "mkt"
[[shaping.pool.source]]
name = "`+src+`"
`))
		if err != nil {
			t.Fatal(err)
		}
		return c.Shaping
	}
	w := newWorld(t, testBounceConfig(), nil)
	w.shaping = pools("before")
	if err := w.svc.Close(); err != nil {
		t.Fatal(err)
	}
	w.open(nil)
	ctx := context.Background()
	report := func(rcpt string) {
		t.Helper()
		id := w.enqueue("marketing", rcpt)
		rp := w.verp.Encode(id, 0)
		if err := w.svc.Handle(ctx, rp, dsn(rp, rcpt, "failed", "5.7.1", "550 5.7.1 blocked; poor reputation")); err != nil {
			t.Fatal(err)
		}
	}
	suspended := func() map[string]bool {
		got := map[string]bool{}
		for _, a := range w.sh.Status().Actions {
			if a.Action == config.ActionSuspend {
				got[a.Source+" "+a.Key] = true
			}
		}
		return got
	}
	report("zoe@one.test")
	if got := suspended(); len(got) != 1 || !got["before default:one.test"] {
		t.Fatalf("suspensions after the first report = %v, want source before for one.test", got)
	}
	if err := w.sh.Reload(pools("after")); err != nil {
		t.Fatal(err)
	}
	report("zoe@two.test")
	if got := suspended(); !got["after default:two.test"] || got["before default:two.test"] {
		t.Fatalf("suspensions after reload and a second report = %v, want source after (not before) for two.test", got)
	}
}
