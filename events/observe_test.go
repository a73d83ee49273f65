package events

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/policy/shaping"
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
	sh, err := shaping.New(cfg.Shaping, "petrel.test", quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, testBounceConfig(), nil)
	w.svc.o.Observer = sh
	w.svc.o.Egresses = func(string) []string { return []string{"default"} }
	ctx := context.Background()
	dest := mta.Dest{Domain: "example.test", MXHost: "mx.example.test", Stream: "marketing"}
	permit, err := sh.AcquireConn(ctx, dest)
	if err != nil {
		t.Fatalf("AcquireConn before the report: %v", err)
	}
	permit.Release()
	// The wrapper keeps the shaper's optional interfaces.
	var ps mta.Shaper = w.svc.Shaper(sh)
	if _, ok := ps.(mta.ConnTrier); !ok {
		t.Error("PauseShaper hides mta.ConnTrier")
	}
	if tp, ok := ps.(mta.TLSPolicy); !ok || tp.TLSMode(dest) != sh.TLSMode(dest) {
		t.Error("PauseShaper hides mta.TLSPolicy")
	}

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
