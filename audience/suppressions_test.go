package audience

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/queue"
)

// TestSuppressionEventsSetContactStatus: "suppressed" events in a real
// queue's event log change the status of the contacts with that address
// in every audience (hard bounce -> bounced, complaint -> complained,
// marketing unsubscribe -> unsubscribed, with a consent withdrawal),
// leave others alone (manual, a transactional-stream unsubscribe, erased
// contacts), and the cursor makes a second pass a no-op; on both backends.
func TestSuppressionEventsSetContactStatus(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		a1, err := s.CreateAudience(ctx, Audience{Name: "one"})
		if err != nil {
			t.Fatal(err)
		}
		a2, err := s.CreateAudience(ctx, Audience{Name: "two"})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]int64{}
		for _, c := range []struct {
			aud  int64
			addr string
		}{{a1.ID, "Bounce@Example.test"}, {a2.ID, "bounce@example.test"}, {a1.ID, "angry@example.test"}, {a1.ID, "bye@example.test"},
			{a1.ID, "manual@example.test"}, {a1.ID, "txn@example.test"}, {a1.ID, "gone@example.test"}} {
			got, _, err := s.UpsertContact(ctx, c.aud, ContactInput{Email: c.addr})
			if err != nil {
				t.Fatal(err)
			}
			ids[c.addr] = got.ID
		}
		if _, err := s.Erase(ctx, a1.ID, ids["gone@example.test"]); err != nil {
			t.Fatal(err)
		}
		evs := []queue.Event{
			{Type: "suppressed", Recipient: "bounce@EXAMPLE.test", Stream: "transactional", Reason: "hard_bounce"},
			{Type: "suppressed", Recipient: "angry@example.test", Stream: "marketing", Reason: "complaint"},
			{Type: "suppressed", Recipient: "bye@example.test", Stream: "marketing", Reason: "unsubscribe"},
			{Type: "suppressed", Recipient: "manual@example.test", Stream: "*", Reason: "manual"},
			{Type: "suppressed", Recipient: "txn@example.test", Stream: "transactional", Reason: "unsubscribe"},
			{Type: "suppressed", Recipient: "gone@example.test", Stream: "marketing", Reason: "complaint"},
			{Type: "delivered", Recipient: "bye@example.test"},
		}
		if err := q.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if n, err := s.ApplySuppressionEvents(ctx, q); err != nil || n != 6 {
			t.Fatalf("apply: %d %v", n, err)
		}
		want := map[string]Status{"Bounce@Example.test": Bounced, "bounce@example.test": Bounced, "angry@example.test": Complained,
			"bye@example.test": Unsubscribed, "manual@example.test": Active, "txn@example.test": Active}
		for addr, st := range want {
			aud := a1.ID
			if addr == "bounce@example.test" {
				aud = a2.ID
			}
			c, err := s.Contact(ctx, aud, ids[addr])
			if err != nil {
				t.Fatal(err)
			}
			if c.Status != st {
				t.Errorf("%s: status %s, want %s", addr, c.Status, st)
			}
		}
		for _, addr := range []string{"angry@example.test", "bye@example.test"} {
			ok, err := s.HasConsent(ctx, a1.ID, ids[addr], "marketing")
			if err != nil || ok {
				t.Errorf("%s: marketing consent %v %v, want withdrawn", addr, ok, err)
			}
			l, _ := s.Consent(ctx, a1.ID, ids[addr])
			if len(l) != 1 || l[0].Action != Withdrawn {
				t.Errorf("%s: ledger %+v", addr, l)
			}
		}
		if n, err := s.ApplySuppressionEvents(ctx, q); err != nil || n != 0 {
			t.Fatalf("second pass: %d %v", n, err)
		}
	})
}
