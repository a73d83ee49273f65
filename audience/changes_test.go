package audience

import (
	"context"
	"fmt"
	"testing"
)

// TestChangeLog: tag additions and removals are logged once each, in the
// transaction that made them (replacing a contact's tags with the same
// set logs nothing), and a contact created active, or confirmed from
// pending, is logged as joined; readers page after a cursor and prune.
func TestChangeLog(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, err := s.CreateAudience(ctx, Audience{Name: "news"})
		if err != nil {
			t.Fatal(err)
		}
		doi, err := s.CreateAudience(ctx, Audience{Name: "doi", DoubleOptIn: true})
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.test", Tags: []string{"vip", "new"}})
		if err != nil {
			t.Fatal(err)
		}
		// Same tags again: no change. One dropped, one added.
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.test", Tags: []string{"new", "vip"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.test", Tags: []string{"vip", "buyer"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TagContacts(ctx, a.ID, []int64{c.ID}, []string{"vip", "gold"}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TagContacts(ctx, a.ID, []int64{c.ID}, []string{"gold", "absent"}, true); err != nil {
			t.Fatal(err)
		}
		p, _, err := s.UpsertContact(ctx, doi.ID, ContactInput{Email: "p@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status != Pending {
			t.Fatalf("status %s, want pending", p.Status)
		}
		if _, _, err := s.UpsertContact(ctx, doi.ID, ContactInput{Email: "p@example.test", Status: Active}); err != nil {
			t.Fatal(err)
		}
		all, err := s.Changes(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ch := range all {
			got = append(got, fmt.Sprintf("%d:%d:%s:%s", ch.Audience, ch.Contact, ch.Kind, ch.Value))
		}
		want := []string{
			fmt.Sprintf("%d:%d:joined:", a.ID, c.ID),
			fmt.Sprintf("%d:%d:tag_added:new", a.ID, c.ID), fmt.Sprintf("%d:%d:tag_added:vip", a.ID, c.ID),
			fmt.Sprintf("%d:%d:tag_added:buyer", a.ID, c.ID), fmt.Sprintf("%d:%d:tag_removed:new", a.ID, c.ID),
			fmt.Sprintf("%d:%d:tag_added:gold", a.ID, c.ID),
			fmt.Sprintf("%d:%d:tag_removed:gold", a.ID, c.ID),
			fmt.Sprintf("%d:%d:joined:", doi.ID, p.ID),
		}
		if !sameMultiset(got[:1], want[:1]) || !sameMultiset(got[1:3], want[1:3]) || !sameMultiset(got[3:5], want[3:5]) || fmt.Sprint(got[5:]) != fmt.Sprint(want[5:]) {
			t.Fatalf("changes\n got %v\nwant %v", got, want)
		}
		page, err := s.Changes(ctx, all[2].ID, 2)
		if err != nil || len(page) != 2 || page[0].ID != all[3].ID {
			t.Fatalf("page after %d: %+v %v", all[2].ID, page, err)
		}
		if err := s.PruneChanges(ctx, all[len(all)-2].ID); err != nil {
			t.Fatal(err)
		}
		if rest, _ := s.Changes(ctx, 0, 100); len(rest) != 1 || rest[0].Kind != ChangeJoined {
			t.Fatalf("after prune: %+v", rest)
		}
	})
}

func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// TestContactsByIDAndContactIDs: the batch readers return only the
// audience's contacts, and ContactIDs finds an address in every audience
// that has it (or only the given ones).
func TestContactsByIDAndContactIDs(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "a"})
		b, _ := s.CreateAudience(ctx, Audience{Name: "b"})
		ca, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "X@Example.test"})
		if err != nil {
			t.Fatal(err)
		}
		cb, _, _ := s.UpsertContact(ctx, b.ID, ContactInput{Email: "x@example.test"})
		other, _, _ := s.UpsertContact(ctx, a.ID, ContactInput{Email: "y@example.test"})
		cs, err := s.ContactsByID(ctx, a.ID, []int64{ca.ID, cb.ID, other.ID, 999})
		if err != nil || len(cs) != 2 {
			t.Fatalf("ContactsByID: %+v %v", cs, err)
		}
		ids, err := s.ContactIDs(ctx, "x@EXAMPLE.test")
		if err != nil || len(ids) != 2 || ids[a.ID] != ca.ID || ids[b.ID] != cb.ID {
			t.Fatalf("ContactIDs: %v %v", ids, err)
		}
		if ids, _ := s.ContactIDs(ctx, "x@example.test", b.ID); len(ids) != 1 || ids[b.ID] != cb.ID {
			t.Fatalf("ContactIDs in b: %v", ids)
		}
		if ids, _ := s.ContactIDs(ctx, "z@example.test"); len(ids) != 0 {
			t.Fatalf("unknown address: %v", ids)
		}
		// Consented: the latest entry per contact counts, in the audience only.
		for _, r := range []struct {
			id     int64
			action ConsentAction
		}{{ca.ID, Granted}, {other.ID, Granted}, {other.ID, Withdrawn}, {cb.ID, Granted}} {
			aud := a.ID
			if r.id == cb.ID {
				aud = b.ID
			}
			if _, err := s.RecordConsent(ctx, aud, r.id, ConsentRecord{Purpose: "marketing", Action: r.action, Source: "form"}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Consented(ctx, a.ID, []int64{ca.ID, other.ID, cb.ID}, "marketing")
		if err != nil || !got[ca.ID] || got[other.ID] || got[cb.ID] {
			t.Fatalf("Consented: %v %v", got, err)
		}
	})
}
