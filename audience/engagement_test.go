package audience

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/queue"
)

// TestEngagementEventsFillLastOpened: delivered campaign messages and
// human opens and clicks in a real queue's event log move last_sent,
// last_opened and last_clicked forward (never back, never for machine
// opens or transactional mail), so the engagement segment
// (last_opened > now - duration("720h")) selects the right contacts; a
// second pass after the cursor is a no-op and a repeated page changes
// nothing; on both backends.
func TestEngagementEventsFillLastOpened(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	eachBackend(t, Options{Now: func() time.Time { return now }}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		a, err := s.CreateAudience(ctx, Audience{Name: "one"})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]int64{}
		for _, addr := range []string{"fresh@example.test", "stale@example.test", "machine@example.test", "txn@example.test"} {
			c, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: addr})
			if err != nil {
				t.Fatal(err)
			}
			ids[addr] = c.ID
		}
		id := func(addr string) string { return strconv.FormatInt(ids[addr], 10) }
		recent, old := now.Add(-48*time.Hour), now.Add(-60*24*time.Hour)
		evs := []queue.Event{
			{Type: "delivered", Time: old, Recipient: "fresh@example.test", Campaign: "winter"},
			{Type: "delivered", Time: recent, Recipient: "Fresh@Example.test", Campaign: "spring"},
			{Type: "delivered", Time: recent, Recipient: "txn@example.test"}, // no campaign: transactional
			{Type: "opened", Time: recent, Recipient: id("fresh@example.test"), Campaign: "spring"},
			{Type: "opened", Time: old, Recipient: id("fresh@example.test"), Campaign: "winter"}, // older: no move back
			{Type: "clicked", Time: recent, Recipient: id("fresh@example.test"), Campaign: "spring"},
			{Type: "opened", Time: old, Recipient: id("stale@example.test"), Campaign: "winter"},
			{Type: "opened", Time: recent, Recipient: id("machine@example.test"), Campaign: "spring", Machine: true},
			{Type: "suppressed", Time: recent, Recipient: "other@example.test", Reason: "manual"},
		}
		if err := q.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		for pass := 0; pass < 2; pass++ {
			n, err := s.ApplyEngagementEvents(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int{8, 0}[pass]; n != want {
				t.Fatalf("pass %d applied %d, want %d", pass, n, want)
			}
		}
		get := func(addr string) Contact {
			c, err := s.Contact(ctx, a.ID, ids[addr])
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		unix := func(p *time.Time) int64 {
			if p == nil {
				return 0
			}
			return p.Unix()
		}
		for _, tc := range []struct {
			addr                string
			sent, opened, click time.Time
		}{
			{"fresh@example.test", recent, recent, recent},
			{"stale@example.test", time.Time{}, old, time.Time{}},
			{"machine@example.test", time.Time{}, time.Time{}, time.Time{}},
			{"txn@example.test", time.Time{}, time.Time{}, time.Time{}},
		} {
			c := get(tc.addr)
			want := func(t0 time.Time) int64 {
				if t0.IsZero() {
					return 0
				}
				return t0.Unix()
			}
			if unix(c.LastSent) != want(tc.sent) || unix(c.LastOpened) != want(tc.opened) || unix(c.LastClicked) != want(tc.click) {
				t.Errorf("%s: sent %v opened %v clicked %v, want %v %v %v", tc.addr, c.LastSent, c.LastOpened, c.LastClicked, tc.sent, tc.opened, tc.click)
			}
		}
		if n, err := s.Count(ctx, a.ID, `last_opened > now - duration("720h")`); err != nil || n != 1 {
			t.Fatalf("engaged in 30 days: %d, %v; want 1 (fresh)", n, err)
		}
		// A page seen again (crash before the cursor) changes nothing.
		if err := q.SetCursor(engagementCursor, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ApplyEngagementEvents(ctx, q); err != nil {
			t.Fatal(err)
		}
		if c := get("fresh@example.test"); unix(c.LastOpened) != recent.Unix() {
			t.Fatalf("repeat moved last_opened to %v", c.LastOpened)
		}
	})
}
