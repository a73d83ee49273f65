package campaign

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// queued returns every queued message by recipient (all bodies).
func (e *svcEnv) queued(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	after := ""
	for {
		rs, next, err := e.q.List(e.ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			body, err := e.q.Body(r.MsgID)
			if err != nil {
				t.Fatal(err)
			}
			out[r.Addr] = append(out[r.Addr], string(body))
		}
		if next == "" || len(rs) == 0 {
			return out
		}
		after = next
	}
}

func (e *svcEnv) status(id string) Campaign {
	c, _ := e.svc.Get(e.ctx, id)
	return c
}

// TestCampaignPinsTemplateVersion: a campaign made from a stored
// template pins the version current at creation; a new version saved
// while the campaign is scheduled does not change what it sends, and the
// scheduler starts it at its time.
func TestCampaignPinsTemplateVersion(t *testing.T) {
	eachBackend(t, 6, func(t *testing.T, e *svcEnv) {
		v1, err := e.tpls.Save(e.ctx, Template{CallName: "news", Type: "marketing", Content: Content{Subject: "V1 for %first_name%", Text: "News from %city%.\n"},
			Variables: []string{"first_name", "city"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("pinned")
		sp.Subject, sp.Text, sp.Template = "", "", "news"
		sp.Schedule = &Schedule{SendAt: time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339)}
		c, err := e.svc.Create(e.ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != StatusScheduled || c.Spec.TemplateVersion != v1.Version || c.ScheduledAt == nil {
			t.Fatalf("created %+v", c)
		}
		if _, err := e.tpls.Save(e.ctx, Template{CallName: "news", Type: "marketing", Content: Content{Subject: "V2 %first_name%", Text: "Changed.\n"},
			Variables: []string{"first_name"}}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the scheduled campaign sent", func() bool { return e.status("pinned").Status == StatusSent })
		got := e.queued(t)
		if len(got) != 6 {
			t.Fatalf("%d recipients queued, want 6", len(got))
		}
		for addr, bodies := range got {
			if len(bodies) != 1 || !strings.Contains(bodies[0], "Subject: V1 for Contact") || !strings.Contains(bodies[0], "News from ") {
				t.Errorf("%s got %q, want version 1 once", addr, bodies)
			}
		}
		if c := e.status("pinned"); c.StartedAt == nil || c.StartedAt.Before(*c.ScheduledAt) {
			t.Errorf("started %v before its schedule %v", c.StartedAt, c.ScheduledAt)
		}
		sp = e.spec("both")
		sp.Template = "news"
		if _, err := e.svc.Create(e.ctx, sp); !errors.As(err, new(*invalidError)) {
			t.Errorf("template and inline content together: %v", err)
		}
		sp = e.spec("unknown")
		sp.Subject, sp.Text, sp.Template, sp.TemplateVersion = "", "", "news", 9
		if _, err := e.svc.Create(e.ctx, sp); !errors.As(err, new(*invalidError)) {
			t.Errorf("unknown template version: %v", err)
		}
	})
}

// TestPauseResumeCancelAndTestSend: a pause stops the send between
// pages with nothing queued beyond the saved progress; resume continues
// from the cursor and every contact gets exactly one message; cancel
// ends a send for good (resume then is invalid_state); a test send is
// marked and not counted.
func TestPauseResumeCancelAndTestSend(t *testing.T) {
	eachBackend(t, 60, func(t *testing.T, e *svcEnv) {
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("slow")
		sp.PageSize, sp.Rate = 5, 100 // a page every 50 ms
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.TestSend(e.ctx, "slow", []string{"c3@example.test", "boss@shop.test"})
		if err != nil || len(res) != 2 || res[0].QueueID == "" || res[1].Error != "" {
			t.Fatalf("test send %+v %v", res, err)
		}
		tests := e.queued(t)
		if b := tests["c3@example.test"]; len(b) != 1 || !strings.Contains(b[0], "Subject: [Test] Hello Contact") || !strings.Contains(b[0], "X-Petrel-Test: campaign slow") ||
			!strings.Contains(b[0], "news from Oslo") {
			t.Fatalf("test message %q", b)
		}
		if c := e.status("slow"); c.Status != StatusDraft || c.Progress.Sent != 0 {
			t.Fatalf("a test send changed the campaign: %+v", c)
		}
		if _, err := e.svc.Send(e.ctx, "slow"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "part of the send", func() bool { return e.status("slow").Progress.Sent >= 15 })
		if _, err := e.svc.Pause(e.ctx, "slow"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the send stopped", func() bool {
			e.svc.mu.Lock()
			defer e.svc.mu.Unlock()
			_, running := e.svc.running["slow"]
			return !running
		})
		paused := e.status("slow")
		time.Sleep(200 * time.Millisecond)
		if again := e.status("slow"); again.Status != StatusPaused || again.Progress.Sent != paused.Progress.Sent || paused.Progress.Sent >= 60 {
			t.Fatalf("paused %+v, then %+v", paused.Progress, again.Progress)
		}
		if n := len(e.queued(t)) - 1; int64(n) != paused.Progress.Sent { // boss@shop.test is outside the audience
			t.Fatalf("%d contacts queued while paused, progress says %d", n, paused.Progress.Sent)
		}
		if _, err := e.svc.Pause(e.ctx, "slow"); !errors.As(err, new(*StateError)) {
			t.Fatalf("pause twice: %v", err)
		}
		if _, err := e.svc.Resume(e.ctx, "slow"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "sent after resume", func() bool { return e.status("slow").Status == StatusSent })
		got := e.queued(t)
		for addr, b := range got {
			want := 1
			if addr == "c3@example.test" {
				want = 2 // the test message and the campaign's
			}
			if len(b) != want {
				t.Errorf("%s: %d messages, want %d", addr, len(b), want)
			}
		}
		if c := e.status("slow"); len(got) != 61 || c.Progress.Sent != 60 {
			t.Fatalf("%d recipients queued, progress %+v", len(got), c.Progress)
		}

		sp = e.spec("stopped")
		sp.PageSize, sp.Rate = 5, 100
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Send(e.ctx, "stopped"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "part of the second send", func() bool { return e.status("stopped").Progress.Sent >= 5 })
		if _, err := e.svc.Cancel(e.ctx, "stopped"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		c := e.status("stopped")
		if c.Status != StatusCancelled || c.FinishedAt == nil || c.Progress.Sent >= 60 {
			t.Fatalf("cancelled: %+v", c)
		}
		for _, f := range []func() error{
			func() error { _, err := e.svc.Resume(e.ctx, "stopped"); return err },
			func() error { _, err := e.svc.Send(e.ctx, "stopped"); return err },
			func() error { _, err := e.svc.TestSend(e.ctx, "stopped", []string{"a@b.test"}); return err },
		} {
			if err := f(); !errors.As(err, new(*StateError)) {
				t.Errorf("action on a cancelled campaign: %v", err)
			}
		}
		if _, err := e.svc.TestSend(e.ctx, "slow", nil); !errors.As(err, new(*invalidError)) {
			t.Errorf("test send without addresses: %v", err)
		}
	})
}

// TestScheduleResolve: wall times in IANA zones, RFC 3339 instants, DST
// gaps (moved forward by the gap) and overlaps (first occurrence), and
// the refusals.
func TestScheduleResolve(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		sc   Schedule
		want string // RFC 3339 UTC, or "error"
	}{
		{Schedule{SendAt: "2026-12-24T09:00", TimeZone: "Europe/Oslo"}, "2026-12-24T08:00:00Z"},
		{Schedule{SendAt: "2026-12-24T09:00:30", TimeZone: "America/New_York"}, "2026-12-24T14:00:30Z"},
		{Schedule{SendAt: "2026-12-24 09:00"}, "2026-12-24T09:00:00Z"},
		{Schedule{SendAt: "2026-12-24T09:00:00+08:00"}, "2026-12-24T01:00:00Z"},
		{Schedule{SendAt: "2027-07-01T09:00", TimeZone: "Europe/Oslo"}, "2027-07-01T07:00:00Z"},
		// Spring forward: 02:00-03:00 does not exist on 2027-03-28 in Oslo.
		{Schedule{SendAt: "2027-03-28T02:30", TimeZone: "Europe/Oslo"}, "2027-03-28T01:30:00Z"},
		// Fall back: 02:30 happens twice on 2027-10-31; the first (CEST).
		{Schedule{SendAt: "2027-10-31T02:30", TimeZone: "Europe/Oslo"}, "2027-10-31T00:30:00Z"},
		{Schedule{SendAt: "2027-03-14T02:30", TimeZone: "America/New_York"}, "2027-03-14T07:30:00Z"},
		{Schedule{SendAt: "2027-11-07T01:30", TimeZone: "America/New_York"}, "2027-11-07T05:30:00Z"},
		{Schedule{SendAt: "2026-12-01T11:59:30Z"}, "2026-12-01T11:59:30Z"}, // within the minute of grace
		{Schedule{SendAt: "2026-11-30T09:00", TimeZone: "Europe/Oslo"}, "error"},
		{Schedule{SendAt: "2026-12-24T09:00", TimeZone: "Mars/Olympus"}, "error"},
		{Schedule{SendAt: "2026-12-24T09:00", TimeZone: "Local"}, "error"},
		{Schedule{SendAt: "2026-12-24T09:00", TimeZone: "../../etc/passwd"}, "error"},
		{Schedule{SendAt: "tomorrow"}, "error"},
		{Schedule{}, "error"},
	} {
		at, err := tc.sc.resolve(now)
		got := "error"
		if err == nil {
			got = at.Format(time.RFC3339)
		} else if !errors.As(err, new(*scheduleError)) {
			t.Errorf("%+v: error %v is not a schedule error", tc.sc, err)
		}
		if got != tc.want {
			t.Errorf("%+v: %s, want %s (%v)", tc.sc, got, tc.want, err)
		}
	}
}

// TestEmptySegmentAndConflicts: a campaign whose segment matches nobody
// (it became empty) is sent with nothing mailed; an id used twice is
// ErrExists; actions on an unknown campaign are ErrNotFound.
func TestEmptySegmentAndConflicts(t *testing.T) {
	eachBackend(t, 4, func(t *testing.T, e *svcEnv) {
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("nobody")
		sp.Segment = `city == "Reykjavik"`
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Create(e.ctx, sp); !errors.Is(err, ErrExists) {
			t.Fatalf("second create: %v", err)
		}
		if _, err := e.svc.Send(e.ctx, "nobody"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "sent", func() bool { return e.status("nobody").Status == StatusSent })
		if c := e.status("nobody"); c.Progress.Sent != 0 || !c.Progress.Done || len(e.queued(t)) != 0 {
			t.Fatalf("empty segment: %+v", c)
		}
		for _, f := range []func() error{
			func() error { _, err := e.svc.Send(e.ctx, "ghost"); return err },
			func() error { _, err := e.svc.Pause(e.ctx, "ghost"); return err },
			func() error { _, err := e.svc.Resume(e.ctx, "ghost"); return err },
			func() error { _, err := e.svc.Cancel(e.ctx, "ghost"); return err },
			func() error {
				_, err := e.svc.Schedule(e.ctx, "ghost", Schedule{SendAt: "2099-01-01T00:00"})
				return err
			},
		} {
			if err := f(); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown campaign: %v", err)
			}
		}
	})
}

// FuzzScheduleResolve: any send_at and zone is resolved or refused with
// a schedule error, never a crash; a resolved instant is not in the past.
func FuzzScheduleResolve(f *testing.F) {
	for _, s := range [][2]string{{"2027-03-28T02:30", "Europe/Oslo"}, {"2026-12-24T09:00:00+08:00", ""}, {"2027-10-31 02:30", "America/New_York"}, {"x", "../x"}} {
		f.Add(s[0], s[1], false)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, at, zone string, perContact bool) {
		got, err := Schedule{SendAt: at, TimeZone: zone, ContactTimeZone: perContact}.resolve(now)
		if err != nil {
			if !errors.As(err, new(*scheduleError)) {
				t.Fatalf("error %v is not a schedule error", err)
			}
			return
		}
		if got.Before(now.Add(-time.Minute)) {
			t.Fatalf("%q in %q resolved to %v, in the past", at, zone, got)
		}
	})
}
