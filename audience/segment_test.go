package audience

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// segmentData loads a deterministic data set and returns the inputs
// stored (with their engagement times) for the reference predicates.
type segPerson struct {
	email  string
	city   string
	score  float64
	vip    bool
	plan   string
	age    int
	tags   []string
	status Status
	opened int64 // 0 = never
	joined int64
}

func loadSegmentData(t *testing.T, s *Store, now time.Time) (Audience, []segPerson) {
	t.Helper()
	ctx := context.Background()
	a, err := s.CreateAudience(ctx, Audience{Name: "seg", Fields: []Field{
		{Name: "city", Type: Text}, {Name: "score", Type: Number}, {Name: "vip", Type: Boolean},
		{Name: "plan", Type: Enum, Values: []string{"free", "pro", "team"}}, {Name: "joined", Type: Date},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	cities := []string{"Taipei", "Paris", "Oslo", "", "taipei", "Zürich"}
	var people []segPerson
	var ins []ContactInput
	for i := range 300 {
		p := segPerson{
			email: fmt.Sprintf("u%d@example.com", i), city: cities[r.IntN(len(cities))],
			score: float64(r.IntN(200)) / 2, vip: r.IntN(3) == 0, plan: []string{"free", "pro", "team", ""}[r.IntN(4)],
			age: r.IntN(80), status: []Status{Active, Active, Active, Unsubscribed, Bounced}[r.IntN(5)],
		}
		for _, tg := range []string{"vip", "beta", "x'y"} {
			if r.IntN(3) == 0 {
				p.tags = append(p.tags, tg)
			}
		}
		if r.IntN(2) == 0 {
			p.opened = now.Add(-time.Duration(r.IntN(60*24)) * time.Hour).Unix()
		}
		if r.IntN(4) != 0 {
			p.joined = time.Date(2020+r.IntN(6), 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		}
		f := map[string]any{"score": p.score, "vip": p.vip}
		if p.city != "" {
			f["city"] = p.city
		}
		if p.plan != "" {
			f["plan"] = p.plan
		}
		if p.joined != 0 {
			f["joined"] = time.Unix(p.joined, 0).UTC().Format(time.DateOnly)
		}
		in := ContactInput{Email: p.email, Status: p.status, Fields: f, Tags: p.tags}
		if i%10 == 5 { // a local part in capitals, kept as given; the domain is lower-cased
			p.email = fmt.Sprintf("U%d@example.com", i)
			in.Email = fmt.Sprintf("U%d@Example.COM", i)
		}
		if i%7 != 0 {
			in.Age = ptr(p.age)
		} else {
			p.age = 0
		}
		people = append(people, p)
		ins = append(ins, in)
	}
	res, err := s.UpsertContacts(ctx, a.ID, ins, DupUpdate, TagsReplace)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range people {
		if res[i].Outcome != Created {
			t.Fatalf("row %d: %+v", i, res[i])
		}
		if p.opened != 0 {
			if _, err := s.exec(ctx, s.db, `UPDATE contacts SET last_opened = ? WHERE id = ?`, p.opened, res[i].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return a, people
}

func TestSegmentsSQLAndGoAgree(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	eachBackend(t, Options{Now: func() time.Time { return now }}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, people := loadSegmentData(t, s, now)
		cutoff := now.Add(-720 * time.Hour).Unix()
		for _, tc := range []struct {
			expr  string
			sql   bool // expected to take the SQL path
			match func(p segPerson) bool
		}{
			{`city == "Taipei" && "vip" in tags && last_opened > now - duration("720h")`, true,
				func(p segPerson) bool {
					return p.city == "Taipei" && slices.Contains(p.tags, "vip") && p.opened > cutoff
				}},
			{`city != "Taipei" || !("beta" in tags)`, true,
				func(p segPerson) bool { return p.city != "Taipei" || !slices.Contains(p.tags, "beta") }},
			{`score >= 50 && score < 75.5 && age > 30`, true,
				func(p segPerson) bool { return p.score >= 50 && p.score < 75.5 && p.age > 30 }},
			{`vip && status == "active"`, true, func(p segPerson) bool { return p.vip && p.status == Active }},
			{`!vip || plan == "pro"`, true, func(p segPerson) bool { return !p.vip || p.plan == "pro" }},
			{`plan in ["pro", "team"] && status != "bounced"`, true,
				func(p segPerson) bool { return (p.plan == "pro" || p.plan == "team") && p.status != Bounced }},
			{`joined >= timestamp("2023-01-01T00:00:00Z") && joined < timestamp("2025-01-01T00:00:00Z")`, true,
				func(p segPerson) bool {
					return p.joined >= time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).Unix() && p.joined < time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
				}},
			{`last_opened < now - duration("1000h")`, true, func(p segPerson) bool { return p.opened < now.Add(-1000*time.Hour).Unix() }},
			{`city < "Paris"`, true, func(p segPerson) bool { return p.city < "Paris" }},
			{`"x'y" in tags`, true, func(p segPerson) bool { return slices.Contains(p.tags, "x'y") }},
			{`age == 0`, true, func(p segPerson) bool { return p.age == 0 }},
			{`true`, true, func(segPerson) bool { return true }},
			{`email.contains("1@") && city.startsWith("Tai")`, true,
				func(p segPerson) bool { return strings.Contains(p.email, "1@") && strings.HasPrefix(p.city, "Tai") }},
			{`email.endsWith("3@example.com") || city.contains("ari")`, true,
				func(p segPerson) bool {
					return strings.HasSuffix(p.email, "3@example.com") || strings.Contains(p.city, "ari")
				}},
			{`!city.contains("a")`, true, func(p segPerson) bool { return !strings.Contains(p.city, "a") }},
			// Whole-address comparisons (the contact search) use the address index.
			{`email == "u7@example.com"`, true, func(p segPerson) bool { return p.email == "u7@example.com" }},
			{`"U15@example.com" == email || email == "u25@example.com" || email == "U35@Example.com"`, true,
				func(p segPerson) bool { return p.email == "U15@example.com" || p.email == "u25@example.com" }},
			{`!(email == "u8@example.com") && email != "U45@example.com"`, true,
				func(p segPerson) bool { return p.email != "u8@example.com" && p.email != "U45@example.com" }},
			{`email == "erased-1@erased.invalid" || city == "Oslo"`, true, func(p segPerson) bool { return p.city == "Oslo" }},
			// Outside the SQL subset: evaluated in Go.
			{`city.lowerAscii() == "taipei"`, false, func(p segPerson) bool { return strings.ToLower(p.city) == "taipei" }},
			{`size(tags) >= 2 && email.lowerAscii().endsWith("0@example.com")`, false,
				func(p segPerson) bool { return len(p.tags) >= 2 && strings.HasSuffix(p.email, "0@example.com") }},
			{`tags.exists(t, t.startsWith("b")) || score * 2.0 > 150.0`, false,
				func(p segPerson) bool { return slices.Contains(p.tags, "beta") || p.score*2 > 150 }},
		} {
			want := 0
			for _, p := range people {
				if tc.match(p) {
					want++
				}
			}
			q, err := s.compile(&a, tc.expr)
			if err != nil {
				t.Fatalf("%s: %v", tc.expr, err)
			}
			if (q.where != "") != tc.sql {
				t.Errorf("%s: SQL translation %q, want translated=%v", tc.expr, q.where, tc.sql)
			}
			got, err := s.Count(ctx, a.ID, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			inGo, err := s.countGo(ctx, &a, q)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || inGo != want {
				t.Errorf("%s: count %d, in Go %d, reference %d", tc.expr, got, inGo, want)
			}
			if want == 0 || want == len(people) && tc.expr != "true" {
				t.Errorf("%s: matches %d of %d: a weak test case", tc.expr, want, len(people))
			}
			// Paging with the segment returns the same set either way.
			var ids []int64
			var after int64
			for {
				page, next, err := s.ListContacts(ctx, a.ID, ListOptions{Segment: tc.expr, After: after, Limit: 37})
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range page {
					ids = append(ids, c.ID)
				}
				if next == 0 {
					break
				}
				after = next
			}
			if len(ids) != want || !slices.IsSorted(ids) {
				t.Errorf("%s: paged %d contacts, want %d", tc.expr, len(ids), want)
			}
		}
	})
}

func TestSegmentErrors(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "e", Fields: []Field{{Name: "city", Type: Text}}})
		for _, tc := range []struct {
			expr      string
			line, col int
		}{
			{`cty == "x"`, 1, 1},
			{`city == "x" &&`, 1, 15},
			{"city == \"x\" &&\n  age > \"3\"", 2, 7},
			{`city`, 1, 1},
			{`city == "a" ` + strings.Repeat(`|| city == "a" `, 400), 1, 1},
			{strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100), 1, 0},
		} {
			err := s.CheckExpression(ctx, a.ID, tc.expr)
			e, ok := err.(*ExprError)
			if !ok {
				t.Errorf("%.40q: %v, want an ExprError", tc.expr, err)
				continue
			}
			if tc.col != 0 && (e.Line != tc.line || e.Column != tc.col) {
				t.Errorf("%.40q: at %d:%d (%s), want %d:%d", tc.expr, e.Line, e.Column, e.Message, tc.line, tc.col)
			}
		}
		// An expression whose evaluation is too expensive stops at the
		// cost limit instead of running away.
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.com", Tags: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Count(ctx, a.ID, `tags.all(a, tags.all(b, tags.all(c, tags.all(d, tags.all(e, a + b + c + d + e != "")))))`)
		if !IsKind(err, Invalid) || !strings.Contains(err.Error(), "cost") {
			t.Fatalf("runaway expression: %v", err)
		}
		sg, err := s.CreateSegment(ctx, a.ID, "taipei", `city == "Taipei"`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateSegment(ctx, a.ID, "taipei", `true`); !IsKind(err, Conflict) {
			t.Fatalf("duplicate segment: %v", err)
		}
		if _, err := s.CreateSegment(ctx, a.ID, "bad", `city ==`); err == nil {
			t.Fatal("bad segment saved")
		}
		got, err := s.SegmentByID(ctx, a.ID, sg.ID)
		if err != nil || got.Expression != `city == "Taipei"` {
			t.Fatalf("segment %+v %v", got, err)
		}
		list, _ := s.Segments(ctx, a.ID)
		if len(list) != 1 {
			t.Fatalf("segments %+v", list)
		}
	})
}

var _ = sql.ErrNoRows

// TestCountSegmentsOnePass: the one-pass counts of saved segments (SQL
// and Go ones together) equal each segment's own Count.
func TestCountSegmentsOnePass(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	eachBackend(t, Options{Now: func() time.Time { return now }}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, _ := loadSegmentData(t, s, now)
		exprs := []string{`city == "Taipei" && "vip" in tags`, `score >= 50 || !vip`, `size(tags) >= 2`,
			`email == "u7@example.com"`, `city.lowerAscii() == "taipei" && score > 10.0`, `true`}
		var segs []Segment
		for i, e := range exprs {
			sg, err := s.CreateSegment(ctx, a.ID, fmt.Sprint("s", i), e)
			if err != nil {
				t.Fatal(err)
			}
			segs = append(segs, sg)
		}
		counts, errs, err := s.CountSegments(ctx, a.ID, segs)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range exprs {
			want, err := s.Count(ctx, a.ID, e)
			if err != nil {
				t.Fatal(err)
			}
			if errs[i] != nil || counts[i] != want {
				t.Errorf("%s: one pass %d (%v), alone %d", e, counts[i], errs[i], want)
			}
			if want == 0 && e != `email == "u7@example.com"` {
				t.Errorf("%s: matches nothing: a weak case", e)
			}
		}
		// A segment saved under other fields no longer compiles: its error, the others' counts.
		bad := append(slices.Clone(segs), Segment{ID: 99, Expression: `nosuchfield == 1`})
		counts, errs, err = s.CountSegments(ctx, a.ID, bad)
		if err != nil || errs[len(bad)-1] == nil || errs[0] != nil || counts[0] == 0 {
			t.Errorf("with a bad segment: %v %v %v", counts, errs, err)
		}
	})
}
