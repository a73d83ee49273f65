package flow

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/events"
)

// TestRunnerReadsThroughItsTransaction: on SQLite a write transaction
// that needs a second pool connection for a read can wait for ever when
// the pool's other connections are taken by writers waiting for its
// lock (they give up after busy_timeout with SQLITE_BUSY: a dashboard
// test saw a campaign create fail so while the runner followed 20,000
// "joined" changes). With the pool cut to one connection, the runner
// must still handle a join, a custom event, an open and a scan for
// contacts who stopped opening: each transaction reads only through
// itself.
func TestRunnerReadsThroughItsTransaction(t *testing.T) {
	fx := newFixture(t, filepath.Join(t.TempDir(), "esp.db"), Options{})
	fx.contact("ada@example.test")
	if _, err := fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: "cart_abandoned", Properties: map[string]any{"cart_url": "https://shop.example/c/1"}}); err != nil {
		t.Fatal(err)
	}
	if err := fx.q.AppendEvents(fx.ctx, []events.Event{{Type: "opened", Time: fx.clk.Now(), Recipient: "ada@example.test", Campaign: "spring"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Save(fx.ctx, Flow{ID: "winback", Audience: fx.news.ID, From: "a@shop.example", Trigger: Trigger{Type: TriggerNotOpened, Days: 7},
		Steps: []Step{{ID: "s", Type: StepSend, Template: "welcome-3"}}}); err != nil {
		t.Fatal(err)
	}
	fx.aud.DB().SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(fx.ctx, 20*time.Second)
	defer cancel()
	// The not_opened scan reads each contact's last open inside its
	// transaction (a week on: ada never opened).
	fx.clk.Add(8 * 24 * time.Hour)
	if n, err := fx.svc.Scan(ctx); err != nil || n != 1 {
		t.Fatalf("scan on a one-connection pool: %d entered, %v; want 1", n, err)
	}
	total := 0
	for range 100 {
		n, err := fx.svc.Step(ctx, fx.q)
		if err != nil {
			t.Fatalf("step with one connection (a transaction waiting for a second one?): %v", err)
		}
		if total += n; n == 0 {
			break
		}
	}
	if m := fx.mail()["ada@example.test"]; len(m) == 0 || total < 3 {
		t.Fatalf("handled %d records, mail %q: want the join, the event and the open handled and the welcome mail queued", total, m)
	}
}
