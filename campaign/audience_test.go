package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// TestSendToAudienceSegment runs a campaign from a real audience store
// (embedded SQLite) through ingest into a real queue: only active contacts
// of the segment with a marketing grant are mailed, personalised from
// their fields; the others are counted by reason.
func TestSendToAudienceSegment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := audience.Open(ctx, filepath.Join(dir, "esp.db"), audience.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.CreateAudience(ctx, audience.Audience{Name: "news", Fields: []audience.Field{{Name: "city", Type: audience.Text}}})
	if err != nil {
		t.Fatal(err)
	}
	type person struct {
		name, city string
		status     audience.Status
		consent    bool
	}
	people := []person{
		{"Ann Lee", "Taipei", audience.Active, true},
		{"Bo Chen", "Taipei", audience.Active, false},    // no grant
		{"Cy Wu", "Taipei", audience.Unsubscribed, true}, // unsubscribed
		{"Di Lin", "Oslo", audience.Active, true},        // not in the segment
		{"Ed Ma", "Taipei", audience.Active, true},
	}
	for i, p := range people {
		name := p.name
		c, _, err := st.UpsertContact(ctx, a.ID, audience.ContactInput{Email: fmt.Sprintf("p%d@example.test", i), Name: &name,
			Status: p.status, Fields: map[string]any{"city": p.city}})
		if err != nil {
			t.Fatal(err)
		}
		if p.consent {
			if _, err := st.RecordConsent(ctx, a.ID, c.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "form"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	prog, err := NewSQLProgress(ctx, openSQLite(t, filepath.Join(dir, "progress.db")), false)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := Compile(Content{Subject: "Hi %first_name%", Text: "Hello %name%, news from %city|your city%.\n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Submitter: ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)}), Progress: prog}
	src := AudienceSource{Store: st, Audience: a.ID, Segment: `city == "Taipei"`, RequireConsent: true}
	res, err := e.Run(ctx, Send{ID: "taipei-news", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, PageSize: 2}, src)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2 || res.Skipped["no_consent"] != 1 || res.Skipped["unsubscribed"] != 1 || !res.Done {
		t.Fatalf("state %+v, want 2 sent, 1 no_consent, 1 unsubscribed", res)
	}
	rs, _, err := q.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rs {
		body, err := q.Body(r.MsgID)
		if err != nil {
			t.Fatal(err)
		}
		got[r.Addr] = string(body)
	}
	if len(got) != 2 || !strings.Contains(got["p0@example.test"], "Hello Ann Lee, news from Taipei.") ||
		!strings.Contains(got["p0@example.test"], "Subject: Hi Ann") || !strings.Contains(got["p4@example.test"], "Hello Ed Ma") {
		t.Fatalf("queued: %v", got)
	}
}
