package audience

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

func TestMigrationsRunOnceAndReopen(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			dsn := backendDSN(t, b)
			s, err := Open(ctx, dsn, Options{})
			if err != nil {
				t.Fatal(err)
			}
			a, err := s.CreateAudience(ctx, Audience{Name: "news"})
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			key := s.erasureHash("x")
			s.Close()
			s, err = Open(ctx, dsn, Options{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			v, err := s.SchemaVersion(ctx)
			if err != nil || v != len(migrations) {
				t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
			}
			if _, err := s.Contact(ctx, a.ID, c.ID); err != nil {
				t.Fatalf("contact lost across reopen: %v", err)
			}
			if s.erasureHash("x") != key {
				t.Fatal("erasure key changed across reopen")
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct {
		in, email, key string
		bad            bool
	}{
		{in: "Alice@Example.COM", email: "Alice@example.com", key: "alice@example.com"},
		{in: "  bob@example.org ", email: "bob@example.org", key: "bob@example.org"},
		{in: "user@Bücher.example", email: "user@xn--bcher-kva.example", key: "user@xn--bcher-kva.example"},
		{in: "x@münchen.de.", email: "x@xn--mnchen-3ya.de", key: "x@xn--mnchen-3ya.de"},
		{in: "no-at-sign", bad: true},
		{in: "@example.com", bad: true},
		{in: "a@", bad: true},
		{in: "a@localhost", bad: true},
		{in: "a b@example.com", bad: true},
		{in: "a@exa mple.com", bad: true},
		{in: "a@-bad-.com", bad: true},
		{in: "a\x00@example.com", bad: true},
		{in: "Robert'); DROP TABLE contacts;--@x.com", bad: true},
	} {
		email, key, err := NormalizeEmail(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("NormalizeEmail(%q) = %q, want an error", tc.in, email)
			}
			continue
		}
		if err != nil || email != tc.email || key != tc.key {
			t.Errorf("NormalizeEmail(%q) = %q, %q, %v; want %q, %q", tc.in, email, key, err, tc.email, tc.key)
		}
	}
}

func TestAudienceFields(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, err := s.CreateAudience(ctx, Audience{Name: "news", DoubleOptIn: true, Fields: []Field{
			{Name: "city", Type: Text}, {Name: "plan", Type: Enum, Values: []string{"free", "pro"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateAudience(ctx, Audience{Name: "news"}); !IsKind(err, Conflict) {
			t.Fatalf("duplicate audience: %v, want conflict", err)
		}
		for _, bad := range [][]Field{
			{{Name: "email", Type: Text}},
			{{Name: "City", Type: Text}},
			{{Name: "x", Type: "blob"}},
			{{Name: "e", Type: Enum}},
			{{Name: "city", Type: Text}},
		} {
			if _, err := s.AddFields(ctx, a.ID, bad); !IsKind(err, Invalid) {
				t.Errorf("AddFields(%v) = %v, want invalid", bad, err)
			}
		}
		var many []Field
		for i := range MaxFields - 2 {
			many = append(many, Field{Name: "f" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Type: Number})
		}
		got, err := s.AddFields(ctx, a.ID, many)
		if err != nil || len(got.Fields) != MaxFields {
			t.Fatalf("AddFields up to %d: %d fields, %v", MaxFields, len(got.Fields), err)
		}
		if _, err := s.AddFields(ctx, a.ID, []Field{{Name: "one_more", Type: Text}}); !IsKind(err, Invalid) {
			t.Fatalf("field %d accepted: %v", MaxFields+1, err)
		}
		got, _ = s.Audience(ctx, a.ID)
		if len(got.Fields) != MaxFields || !got.DoubleOptIn || !slices.Equal(got.Fields[1].Values, []string{"free", "pro"}) {
			t.Fatalf("stored audience %+v", got)
		}
	})
}

func TestContactCRUDAndValidation(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, err := s.CreateAudience(ctx, Audience{Name: "news", Fields: []Field{
			{Name: "city", Type: Text}, {Name: "score", Type: Number}, {Name: "vip", Type: Boolean},
			{Name: "joined", Type: Date}, {Name: "seen", Type: DateTime}, {Name: "plan", Type: Enum, Values: []string{"free", "pro"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		c, out, err := s.UpsertContact(ctx, a.ID, ContactInput{
			Email: "Alice@Bücher.example", Name: ptr("Alice"), Age: ptr(33), TimeZone: ptr("Asia/Taipei"), Birthday: ptr("1990-02-03"),
			Fields: map[string]any{"city": "Taipei", "score": 4.5, "vip": true, "joined": "2024-01-02", "seen": "2024-01-02T03:04:05Z", "plan": "pro"},
			Tags:   []string{"a", "b", "a"},
		})
		if err != nil || out != Created {
			t.Fatalf("create: %v %v", out, err)
		}
		if c.Email != "Alice@xn--bcher-kva.example" || c.Status != Active || c.Name != "Alice" || *c.Age != 33 || c.Birthday != "1990-02-03" {
			t.Fatalf("created %+v", c)
		}
		want := map[string]any{"city": "Taipei", "score": 4.5, "vip": true, "joined": "2024-01-02", "seen": "2024-01-02T03:04:05Z", "plan": "pro"}
		for k, v := range want {
			if c.Fields[k] != v {
				t.Errorf("field %s = %#v, want %#v", k, c.Fields[k], v)
			}
		}
		if !slices.Equal(c.Tags, []string{"a", "b"}) {
			t.Errorf("tags %v", c.Tags)
		}
		// Same address, other case: an update that merges fields and
		// clears one with null.
		c2, out, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "ALICE@bücher.EXAMPLE", Fields: map[string]any{"city": "Paris", "plan": nil}, Tags: []string{"c"}})
		if err != nil || out != Updated || c2.ID != c.ID {
			t.Fatalf("update: %v %v id %d/%d", out, err, c2.ID, c.ID)
		}
		if c2.Fields["city"] != "Paris" || c2.Fields["score"] != 4.5 || c2.Fields["plan"] != nil || c2.Name != "Alice" || !slices.Equal(c2.Tags, []string{"c"}) {
			t.Fatalf("merged %+v", c2)
		}
		if got, err := s.ContactByEmail(ctx, a.ID, "alice@XN--BCHER-KVA.example"); err != nil || got.ID != c.ID {
			t.Fatalf("by email: %v %v", got.ID, err)
		}
		for _, in := range []ContactInput{
			{Email: "not an email"},
			{Email: "b@example.com", Fields: map[string]any{"score": "high"}},
			{Email: "b@example.com", Fields: map[string]any{"vip": "maybe"}},
			{Email: "b@example.com", Fields: map[string]any{"joined": "02/01/2024"}},
			{Email: "b@example.com", Fields: map[string]any{"plan": "gold"}},
			{Email: "b@example.com", Fields: map[string]any{"city": 3.0}},
			{Email: "b@example.com", Fields: map[string]any{"nope": "x"}},
			{Email: "b@example.com", Status: Erased},
			{Email: "b@example.com", TimeZone: ptr("Mars/Olympus")},
			{Email: "b@example.com", Age: ptr(-1)},
		} {
			if _, _, err := s.UpsertContact(ctx, a.ID, in); !IsKind(err, Invalid) {
				t.Errorf("UpsertContact(%+v) = %v, want invalid", in, err)
			}
		}
		if _, err := s.ContactByEmail(ctx, a.ID, "b@example.com"); !IsKind(err, NotFound) {
			t.Fatalf("invalid input stored something: %v", err)
		}
		// SQL-ish strings are data.
		evil := "x'); DROP TABLE contacts; --"
		c3, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "evil@example.com", Name: &evil, Fields: map[string]any{"city": evil}, Tags: []string{evil}})
		if err != nil || c3.Name != evil || c3.Fields["city"] != evil || c3.Tags[0] != evil {
			t.Fatalf("evil: %+v %v", c3, err)
		}
		if err := s.DeleteContact(ctx, a.ID, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Contact(ctx, a.ID, c.ID); !IsKind(err, NotFound) {
			t.Fatalf("deleted contact: %v", err)
		}
		if err := s.DeleteContact(ctx, a.ID, c.ID); !IsKind(err, NotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

func TestBulkUpsertAndTags(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "news", DoubleOptIn: true, Fields: []Field{{Name: "n", Type: Number}}})
		in := []ContactInput{
			{Email: "a@example.com", Fields: map[string]any{"n": 1.0}, Tags: []string{"x"}},
			{Email: "bad"},
			{Email: "b@example.com", Tags: []string{"y"}},
			{Email: "A@example.com", Fields: map[string]any{"n": 2.0}, Tags: []string{"z"}}, // repeats row 0
		}
		res, err := s.UpsertContacts(ctx, a.ID, in, DupUpdate, TagsAdd)
		if err != nil {
			t.Fatal(err)
		}
		outs := []Outcome{res[0].Outcome, res[1].Outcome, res[2].Outcome, res[3].Outcome}
		if !slices.Equal(outs, []Outcome{Created, Failed, Created, Updated}) || res[1].Column != "email" {
			t.Fatalf("outcomes %v %+v", outs, res)
		}
		c, _ := s.ContactByEmail(ctx, a.ID, "a@example.com")
		if c.Fields["n"] != 2.0 || !slices.Equal(c.Tags, []string{"x", "z"}) || c.Status != Pending || c.Email != "A@example.com" {
			t.Fatalf("a after bulk: %+v", c)
		}
		res, err = s.UpsertContacts(ctx, a.ID, []ContactInput{{Email: "a@example.com", Fields: map[string]any{"n": 9.0}, Tags: []string{"w"}}, {Email: "c@example.com"}}, DupSkip, TagsReplace)
		if err != nil || res[0].Outcome != Skipped || res[1].Outcome != Created {
			t.Fatalf("skip: %+v %v", res, err)
		}
		c, _ = s.ContactByEmail(ctx, a.ID, "a@example.com")
		if c.Fields["n"] != 2.0 || len(c.Tags) != 2 {
			t.Fatalf("skipped row changed the contact: %+v", c)
		}
		b, _ := s.ContactByEmail(ctx, a.ID, "b@example.com")
		n, err := s.TagContacts(ctx, a.ID, []int64{c.ID, b.ID, 999999}, []string{"vip", "q"}, false)
		if err != nil || n != 2 {
			t.Fatalf("tag: %d %v", n, err)
		}
		if n, err = s.TagContacts(ctx, a.ID, []int64{c.ID}, []string{"x", "q"}, true); err != nil || n != 1 {
			t.Fatalf("untag: %d %v", n, err)
		}
		c, _ = s.ContactByEmail(ctx, a.ID, "a@example.com")
		b, _ = s.ContactByEmail(ctx, a.ID, "b@example.com")
		if !slices.Equal(c.Tags, []string{"vip", "z"}) || !slices.Equal(b.Tags, []string{"q", "vip", "y"}) {
			t.Fatalf("tags a=%v b=%v", c.Tags, b.Tags)
		}
	})
}

func TestConsentExportErase(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "news", Fields: []Field{{Name: "city", Type: Text}}})
		other, _ := s.CreateAudience(ctx, Audience{Name: "other"})
		c, _, _ := s.UpsertContact(ctx, a.ID, ContactInput{Email: "p@example.com", Name: ptr("P"), Fields: map[string]any{"city": "Oslo"}, Tags: []string{"t"}})
		o, _, _ := s.UpsertContact(ctx, other.ID, ContactInput{Email: "P@example.com"})
		if ok, _ := s.HasConsent(ctx, a.ID, c.ID, "marketing"); ok {
			t.Fatal("consent without a grant")
		}
		if _, err := s.RecordConsent(ctx, a.ID, c.ID, ConsentRecord{Purpose: "marketing", Action: Granted, Source: "form", IP: "192.0.2.1", UserAgent: "UA/1", TextVersion: "v3"}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.HasConsent(ctx, a.ID, c.ID, "marketing"); !ok {
			t.Fatal("grant not seen")
		}
		if _, err := s.RecordConsent(ctx, a.ID, c.ID, ConsentRecord{Purpose: "marketing", Action: Withdrawn, Source: "unsubscribe"}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.HasConsent(ctx, a.ID, c.ID, "marketing"); ok {
			t.Fatal("withdrawal not seen")
		}
		for _, bad := range []ConsentRecord{{Purpose: "", Action: Granted, Source: "form"}, {Purpose: "marketing", Action: "maybe", Source: "form"}, {Purpose: "marketing", Action: Granted, Source: "x'; --"}} {
			if _, err := s.RecordConsent(ctx, a.ID, c.ID, bad); !IsKind(err, Invalid) {
				t.Errorf("RecordConsent(%+v) = %v", bad, err)
			}
		}
		if _, err := s.RecordConsent(ctx, other.ID, c.ID, ConsentRecord{Purpose: "marketing", Action: Granted, Source: "form"}); !IsKind(err, NotFound) {
			t.Fatalf("consent on another audience's contact: %v", err)
		}
		ex, err := s.ExportContact(ctx, a.ID, c.ID)
		if err != nil || ex.Contact.Email != "p@example.com" || len(ex.Consent) != 2 || ex.Consent[0].IP != "192.0.2.1" || ex.Consent[0].TextVersion != "v3" || ex.Consent[1].Action != Withdrawn {
			t.Fatalf("export %+v %v", ex, err)
		}
		n, err := s.Erase(ctx, a.ID, c.ID)
		if err != nil || n != 2 {
			t.Fatalf("erase: %d %v (want both audiences' contacts)", n, err)
		}
		for _, id := range []struct{ aud, id int64 }{{a.ID, c.ID}, {other.ID, o.ID}} {
			got, err := s.Contact(ctx, id.aud, id.id)
			if err != nil || got.Status != Erased || got.Name != "" || len(got.Fields) != 0 || len(got.Tags) != 0 || got.Email == "p@example.com" {
				t.Fatalf("erased contact %+v %v", got, err)
			}
		}
		l, _ := s.Consent(ctx, a.ID, c.ID)
		if len(l) != 2 || l[0].IP != "" || l[0].UserAgent != "" || l[0].Purpose != "marketing" {
			t.Fatalf("ledger after erase %+v", l)
		}
		if ok, _ := s.IsErased(ctx, "P@EXAMPLE.com"); !ok {
			t.Fatal("erased address not recorded")
		}
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "p@Example.com"}); !IsKind(err, Conflict) {
			t.Fatalf("re-adding an erased address: %v", err)
		}
		res, err := s.UpsertContacts(ctx, other.ID, []ContactInput{{Email: "p@example.com"}}, DupUpdate, TagsAdd)
		if err != nil || res[0].Outcome != Failed {
			t.Fatalf("bulk re-add of an erased address: %+v %v", res, err)
		}
	})
}

// TestLargeBatch writes more rows in one transaction than one SQL
// statement can bind parameters for (SQLite: 32,766).
func TestLargeBatch(t *testing.T) {
	eachBackend(t, Options{BatchSize: 6000}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "big"})
		in := make([]ContactInput, 5000)
		for i := range in {
			in[i] = ContactInput{Email: fmt.Sprintf("u%d@example.com", i), Name: ptr("x"), Tags: []string{"a", "b"}}
		}
		res, err := s.UpsertContacts(ctx, a.ID, in, DupUpdate, TagsAdd)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Outcome != Created {
				t.Fatalf("row %d: %+v", i, r)
			}
		}
		if n, _ := s.Count(ctx, a.ID, `"b" in tags`); n != 5000 {
			t.Fatalf("count %d", n)
		}
	})
}
