package audience

import (
	"context"
	"testing"
)

// TestOptOutAudiences: the preference centre's store calls on both
// backends — Subscriptions lists every audience of an address (not the
// erased one, not other addresses), OptOutAudiences unsubscribes one list
// with a ledger withdrawal carrying source, IP and user agent, reports
// how many subscribed lists remain, leaves a bounced contact bounced, and
// opting out of everything leaves none.
func TestOptOutAudiences(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var auds []Audience
		for _, n := range []string{"news", "offers", "events"} {
			a, err := s.CreateAudience(ctx, Audience{Name: n})
			if err != nil {
				t.Fatal(err)
			}
			auds = append(auds, a)
		}
		contact := func(aud int64, addr string, st Status) int64 {
			c, _, err := s.UpsertContact(ctx, aud, ContactInput{Email: addr, Status: st})
			if err != nil {
				t.Fatal(err)
			}
			return c.ID
		}
		news := contact(auds[0].ID, "Ann@Example.test", Active)
		contact(auds[1].ID, "ann@example.test", Active)
		events := contact(auds[2].ID, "ann@example.test", Bounced)
		contact(auds[0].ID, "bob@example.test", Active)
		subs, err := s.Subscriptions(ctx, "ANN@example.test")
		if err != nil || len(subs) != 3 {
			t.Fatalf("subscriptions: %v %+v", err, subs)
		}
		if subs[0].Audience != "events" || subs[0].Subscribed || !subs[1].Subscribed || subs[1].Audience != "news" || !subs[2].Subscribed {
			t.Fatalf("subscriptions %+v", subs)
		}
		changed, left, err := s.OptOutAudiences(ctx, "ann@example.test", []int64{auds[0].ID, auds[2].ID}, OptOut{IP: "192.0.2.1", UserAgent: "Firefox", TextVersion: "prefs-v1"})
		if err != nil || len(changed) != 1 || changed[0] != auds[0].ID || left != 1 {
			t.Fatalf("opt out of news+events: %v changed %v left %d", err, changed, left)
		}
		c, err := s.Contact(ctx, auds[0].ID, news)
		if err != nil || c.Status != Unsubscribed {
			t.Fatalf("news contact %v %s", err, c.Status)
		}
		if c, _ := s.Contact(ctx, auds[2].ID, events); c.Status != Bounced {
			t.Fatalf("bounced contact became %s", c.Status)
		}
		l, err := s.Consent(ctx, auds[0].ID, news)
		if err != nil || len(l) != 1 || l[0].Action != Withdrawn || l[0].Purpose != "marketing" || l[0].Source != "preference_centre" ||
			l[0].IP != "192.0.2.1" || l[0].UserAgent != "Firefox" || l[0].TextVersion != "prefs-v1" {
			t.Fatalf("ledger %v %+v", err, l)
		}
		if ok, _ := s.HasConsent(ctx, auds[0].ID, news, "marketing"); ok {
			t.Fatal("consent still granted after opting out")
		}
		if _, left, err := s.OptOutAudiences(ctx, "ann@example.test", []int64{}, OptOut{}); err != nil || left != 1 {
			t.Fatalf("empty opt-out: %v left %d", err, left)
		}
		changed, left, err = s.OptOutAudiences(ctx, "ann@example.test", nil, OptOut{Source: "unsubscribe"})
		if err != nil || len(changed) != 1 || changed[0] != auds[1].ID || left != 0 {
			t.Fatalf("opt out of all: %v changed %v left %d", err, changed, left)
		}
		if subs, _ := s.Subscriptions(ctx, "bob@example.test"); len(subs) != 1 || !subs[0].Subscribed {
			t.Fatalf("bob touched: %+v", subs)
		}
		if _, _, err := s.OptOutAudiences(ctx, "ann@example.test", nil, OptOut{Source: "Bad Source"}); err == nil {
			t.Fatal("bad source accepted")
		}
	})
}
