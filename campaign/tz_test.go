package campaign

import (
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
)

// TestContactTimeZoneSend: "09:00 in each contact's time zone" as passes
// per instant. With the wall time a moment from now in UTC, Tokyo
// contacts (their 09:00 long past) are mailed at once, UTC contacts and
// those without a zone (the campaign's zone, UTC) at the wall time, and
// New York-minus-one contacts (Etc/GMT+1, an hour later) not yet; the
// plan survives a restart and nobody is mailed twice.
func TestContactTimeZoneSend(t *testing.T) {
	eachBackend(t, 0, func(t *testing.T, e *svcEnv) {
		zones := map[string]string{"tokyo": "Asia/Tokyo", "utc": "UTC", "west": "Etc/GMT+1", "none": ""}
		for group, z := range zones {
			for i := 0; i < 4; i++ {
				zone := z
				c, _, err := e.aud.UpsertContact(e.ctx, e.aid, audience.ContactInput{Email: fmt.Sprintf("%s%d@example.test", group, i), TimeZone: &zone})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.aud.RecordConsent(e.ctx, e.aid, c.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "form"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := e.svc.Start(e.svcCtx); err != nil {
			t.Fatal(err)
		}
		wall := time.Now().UTC().Add(3 * time.Second)
		sp := e.spec("local9")
		sp.Text = "Good morning.\n"
		sp.Schedule = &Schedule{SendAt: wall.Format("2006-01-02T15:04:05"), TimeZone: "UTC", ContactTimeZone: true}
		c, err := e.svc.Create(e.ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		// The scheduler may already have started it (its first pass is due).
		if c.Status != StatusScheduled && c.Status != StatusSending || c.ScheduledAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("created %+v: should start now (Tokyo's 09:00 has passed)", c)
		}
		count := func(group string) int {
			n := 0
			got := e.queued(t)
			for i := 0; i < 4; i++ {
				n += len(got[fmt.Sprintf("%s%d@example.test", group, i)])
			}
			return n
		}
		waitUntil(t, "the Tokyo pass", func() bool { return count("tokyo") == 4 })
		if time.Now().Before(wall) && count("utc") != 0 {
			t.Fatalf("UTC contacts mailed before their time")
		}
		waitUntil(t, "the UTC pass", func() bool { return count("utc") == 4 && count("none") == 4 })
		if time.Now().Before(wall.Add(-time.Second)) {
			t.Fatal("UTC pass ran early")
		}
		plan, err := e.svc.loadTZPlan(e.ctx, "local9")
		if err != nil || len(plan) != 3 || plan[2].At != wall.Add(time.Hour).Unix() {
			t.Fatalf("plan %+v %v", plan, err)
		}
		e.restart(t)
		time.Sleep(500 * time.Millisecond)
		c = e.status("local9")
		if c.Status != StatusSending || c.Progress.Sent != 12 || c.Progress.Done || count("west") != 0 {
			t.Fatalf("after restart: %+v, west %d", c, count("west"))
		}
		for _, g := range []string{"tokyo", "utc", "none"} {
			if n := count(g); n != 4 {
				t.Errorf("%s: %d messages, want 4 (one each)", g, n)
			}
		}
		if _, err := e.svc.Cancel(e.ctx, "local9"); err != nil {
			t.Fatal(err)
		}
		sp = e.spec("offset")
		sp.Schedule = &Schedule{SendAt: wall.Format(time.RFC3339), ContactTimeZone: true}
		if _, err := e.svc.Create(e.ctx, sp); err == nil {
			t.Error("a per-contact time zone send with an RFC 3339 instant accepted")
		}
	})
}
