package campaign

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/petrel-mta/petrel/audience"
)

// TestExclusions: a campaign's recipients are its audience (and tags)
// minus the contacts whose address is in an excluded audience, those with
// an excluded tag and those matching an excluded saved segment, paged in
// SQL (pages of 3, so exclusions cross page ends); unknown audiences or
// segments to exclude, or a segment SQL cannot express, are refused at
// creation with a 400-class error. On SQLite and PostgreSQL.
func TestExclusions(t *testing.T) {
	eachBackend(t, 12, func(t *testing.T, e *svcEnv) {
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		// c1 and c2 are also in "vip" (C2 in another case: addresses
		// compare by their key).
		vip, err := e.aud.CreateAudience(e.ctx, audience.Audience{Name: "vip"})
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{"c1@example.test", "C2@Example.Test", "someone@example.test"} {
			if _, _, err := e.aud.UpsertContact(e.ctx, vip.ID, audience.ContactInput{Email: addr}); err != nil {
				t.Fatal(err)
			}
		}
		ids := map[string]int64{}
		cs, _, err := e.aud.ListContacts(e.ctx, e.aid, audience.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			ids[c.Email] = c.ID
		}
		tag := func(tag string, n ...int) {
			var list []int64
			for _, i := range n {
				list = append(list, ids[fmt.Sprintf("c%d@example.test", i)])
			}
			if _, err := e.aud.TagContacts(e.ctx, e.aid, list, []string{tag}, false); err != nil {
				t.Fatal(err)
			}
		}
		tag("staff", 4, 9)
		tag("news", 0, 1, 2, 3, 4, 5, 6, 7, 8)
		// Odd contacts live in Oslo; the saved segment excludes them.
		oslo, err := e.aud.CreateSegment(e.ctx, e.aid, "oslo", `city == "Oslo"`)
		if err != nil {
			t.Fatal(err)
		}
		goOnly, err := e.aud.CreateSegment(e.ctx, e.aid, "by-go", `name.matches("^Contact 1")`)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			tags []string
			ex   Exclusions
			want []int
		}{
			{"audience", nil, Exclusions{Audiences: []int64{vip.ID}}, []int{0, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
			{"tag", nil, Exclusions{Tags: []string{"staff", "nobody"}}, []int{0, 1, 2, 3, 5, 6, 7, 8, 10, 11}},
			{"segment", nil, Exclusions{Segments: []int64{oslo.ID}}, []int{0, 2, 4, 6, 8, 10}},
			{"all three, tagged news", []string{"news"}, Exclusions{Audiences: []int64{vip.ID}, Tags: []string{"staff"}, Segments: []int64{oslo.ID}}, []int{0, 6, 8}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := "ex-" + map[string]string{"audience": "a", "tag": "t", "segment": "s", "all three, tagged news": "all"}[tc.name]
				sp := e.spec(id)
				sp.PageSize, sp.Tags, sp.Exclude = 3, tc.tags, &tc.ex
				if _, err := e.svc.Create(e.ctx, sp); err != nil {
					t.Fatal(err)
				}
				before := e.queued(t)
				if _, err := e.svc.Send(e.ctx, id); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, "sent", func() bool { return e.status(id).Status == StatusSent })
				var got []int
				for addr, bodies := range e.queued(t) {
					for range len(bodies) - len(before[addr]) {
						var i int
						if _, err := fmt.Sscanf(addr, "c%d@example.test", &i); err != nil {
							t.Fatalf("mailed %s", addr)
						}
						got = append(got, i)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, tc.want) {
					t.Fatalf("mailed %v, want %v", got, tc.want)
				}
				if c := e.status(id); c.Progress.Sent != int64(len(tc.want)) {
					t.Fatalf("progress %+v, want %d sent", c.Progress, len(tc.want))
				}
			})
		}
		for _, bad := range []Exclusions{{Audiences: []int64{9999}}, {Segments: []int64{9999}}, {Segments: []int64{goOnly.ID}}} {
			sp := e.spec("ex-bad")
			sp.Exclude = &bad
			_, err := e.svc.Create(e.ctx, sp)
			var ae *audience.Error
			if err == nil || !errors.As(err, new(*invalidError)) && !(errors.As(err, &ae) && ae.Kind == audience.Invalid) {
				t.Fatalf("exclusion %+v: %v, want a 400-class error", bad, err)
			}
		}
	})
}
