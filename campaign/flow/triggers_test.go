package flow

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/events"
)

// TestTriggersAndSteps: tag added/removed triggers (from audience's
// change log), a birthday trigger at 09:00 in the contact's time zone
// (once that day), an opened trigger and an opened condition from the
// MTA event log (a real queue), quiet hours in the contact's zone, a
// webhook (a real loopback HTTP server), update_field, a segment
// condition, the frequency cap, and every step appended to the event
// log as a flow_step event.
func TestTriggersAndSteps(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		var hookMu sync.Mutex
		var hooks []map[string]any
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m map[string]any
			b, _ := io.ReadAll(r.Body)
			json.Unmarshal(b, &m)
			m["key"] = r.Header.Get("Idempotency-Key")
			hookMu.Lock()
			hooks = append(hooks, m)
			hookMu.Unlock()
		}))
		defer srv.Close()
		fx.svc.Delete(fx.ctx, "welcome") // not under test here
		save := func(f Flow) {
			t.Helper()
			f.Audience, f.From = fx.news.ID, "a@shop.example"
			if _, err := fx.svc.Save(fx.ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		send := []Step{{ID: "s", Type: StepSend, Template: "welcome-2"}}
		save(Flow{ID: "vip", Trigger: Trigger{Type: TriggerTagAdded, Tag: "vip"}, Reentry: Reentry{Policy: ReentryEvery}, Steps: []Step{
			{ID: "hook", Type: StepWebhook, URL: srv.URL},
			{ID: "plan", Type: StepField, Field: "plan", Value: "gold"},
			{ID: "is-gold", Type: StepCondition, If: &Condition{Segment: `plan == "gold"`}, Else: "end"},
			{ID: "tag", Type: StepTag, Tag: "gold-member"},
			{ID: "end", Type: StepExit},
		}})
		save(Flow{ID: "lapsed", Trigger: Trigger{Type: TriggerTagRemoved, Tag: "vip"}, Steps: send})
		save(Flow{ID: "bday", Trigger: Trigger{Type: TriggerDate, Field: "birthday", At: "09:00"}, Reentry: Reentry{Policy: ReentryEvery}, Steps: send})
		save(Flow{ID: "opener", Trigger: Trigger{Type: TriggerOpened, Campaign: "spring"}, Steps: []Step{
			{ID: "c", Type: StepCondition, If: &Condition{Opened: "spring", Within: Duration(time.Hour)}, Else: "x"},
			{ID: "s", Type: StepSend, Template: "welcome-3"},
			{ID: "x", Type: StepExit},
		}})
		save(Flow{ID: "quiet", Trigger: Trigger{Type: TriggerEvent, Event: "ping"}, QuietHours: &QuietHours{Start: "20:00", End: "08:00"}, Steps: send})

		// Ada lives in Tokyo (UTC+9); it is 10:00 UTC = 19:00 there. Her
		// birthday is today.
		ada, _, err := fx.aud.UpsertContact(fx.ctx, fx.news.ID, audience.ContactInput{Email: "ada@example.test", TimeZone: ptr("Asia/Tokyo"), Birthday: ptr("1990-03-03")})
		if err != nil {
			t.Fatal(err)
		}
		fx.aud.RecordConsent(fx.ctx, fx.news.ID, ada.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "form"})
		if _, err := fx.aud.TagContacts(fx.ctx, fx.news.ID, []int64{ada.ID}, []string{"vip"}, false); err != nil {
			t.Fatal(err)
		}
		fx.runWith(fx.q)
		c, _ := fx.aud.Contact(fx.ctx, fx.news.ID, ada.ID)
		if c.Fields["plan"] != "gold" || !contains(c.Tags, "gold-member") {
			t.Fatalf("vip flow: fields %v tags %v journey %v", c.Fields, c.Tags, fx.journal("ada@example.test"))
		}
		hookMu.Lock()
		if len(hooks) != 1 || hooks[0]["flow"] != "vip" || !strings.HasPrefix(hooks[0]["key"].(string), "flow:vip:") {
			t.Fatalf("webhooks %v", hooks)
		}
		hookMu.Unlock()
		if _, err := fx.aud.TagContacts(fx.ctx, fx.news.ID, []int64{ada.ID}, []string{"vip"}, true); err != nil {
			t.Fatal(err)
		}
		// Birthday: 19:00 in Tokyo is past 09:00 there → enters once today.
		if n, err := fx.svc.Scan(fx.ctx); err != nil || n != 1 {
			t.Fatalf("scan: %d %v", n, err)
		}
		if n, _ := fx.svc.Scan(fx.ctx); n != 0 {
			t.Fatalf("second scan the same day entered %d", n)
		}
		fx.runWith(fx.q)
		// Quiet hours: 19:00 in Tokyo is before 20:00: sends now; at 21:00
		// Tokyo (12:00 UTC) a send waits until 08:00 Tokyo (23:00 UTC).
		fx.clk.Add(2 * time.Hour)
		fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: "ping"})
		fx.runWith(fx.q)
		if st, _ := fx.svc.Stats(fx.ctx, "quiet"); st.Sent != 0 || st.Steps["s"][KindDeferred] != 1 {
			t.Fatalf("quiet hours: %+v", st)
		}
		fx.clk.Add(11*time.Hour - time.Minute)
		fx.runWith(fx.q)
		if st, _ := fx.svc.Stats(fx.ctx, "quiet"); st.Sent != 0 {
			t.Fatalf("sent during quiet hours: %+v", st)
		}
		fx.clk.Add(time.Minute)
		fx.runWith(fx.q)
		if st, _ := fx.svc.Stats(fx.ctx, "quiet"); st.Sent != 1 {
			t.Fatalf("not sent after quiet hours: %+v", st)
		}
		// Engagement: an open of campaign spring in the MTA event log,
		// after 2,500 deliveries the runner skips without decoding (more
		// than a page of the typed scan's results, and what it examines
		// moves its cursor).
		var noise []events.Event
		for i := range 2500 {
			noise = append(noise, events.Event{Type: "delivered", Time: fx.clk.Now(), Recipient: "r" + strconv.Itoa(i) + "@example.test"})
		}
		// An open whose recipient is no address (a transactional token's)
		// is passed over, not an error that holds the follower.
		noise = append(noise, events.Event{Type: "opened", Time: fx.clk.Now(), Recipient: "not an address", Campaign: "spring"})
		if err := fx.q.AppendEvents(fx.ctx, noise); err != nil {
			t.Fatal(err)
		}
		if err := fx.q.AppendEvents(fx.ctx, []events.Event{{Type: "opened", Time: fx.clk.Now(), Recipient: "ada@example.test", Campaign: "spring"}}); err != nil {
			t.Fatal(err)
		}
		fx.runWith(fx.q)
		for _, id := range []string{"lapsed", "bday", "opener"} {
			if st, _ := fx.svc.Stats(fx.ctx, id); st.Sent != 1 {
				t.Errorf("flow %s: %+v", id, st)
			}
		}
		// Every step is in the event log.
		evs, err := fx.q.Events(fx.ctx, events.EventFilter{Type: "flow_step", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range evs {
			if ev.Recipient != "ada@example.test" {
				t.Fatalf("step event without the contact: %+v", ev)
			}
			seen[ev.Campaign+" "+ev.Reason] = true
		}
		for _, want := range []string{"flow:vip hook:entered", "flow:vip hook:webhook", "flow:vip tag:tagged", "flow:opener s:sent", "flow:quiet s:deferred"} {
			if !seen[want] {
				t.Errorf("no step event %q in %v", want, seen)
			}
		}
	})
}

// TestFrequencyCap: with a cap of 2 messages a day, a third flow message
// waits until the window allows it.
func TestFrequencyCap(t *testing.T) {
	fx := newFixture(t, t.TempDir()+"/esp.db", Options{FrequencyCap: 2, FrequencyWindow: 24 * time.Hour})
	fx.svc.Delete(fx.ctx, "welcome")
	for _, id := range []string{"f1", "f2", "f3"} {
		if _, err := fx.svc.Save(fx.ctx, Flow{ID: id, Audience: fx.news.ID, From: "a@shop.example", Trigger: Trigger{Type: TriggerEvent, Event: id},
			Steps: []Step{{ID: "s", Type: StepSend, Template: "welcome-2"}}}); err != nil {
			t.Fatal(err)
		}
	}
	fx.contact("ada@example.test")
	for _, id := range []string{"f1", "f2", "f3"} {
		fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: id})
		fx.run()
		fx.clk.Add(time.Hour)
	}
	if n := len(fx.mail()["ada@example.test"]); n != 2 {
		t.Fatalf("%d messages under a cap of 2", n)
	}
	fx.clk.Add(22 * time.Hour)
	fx.run()
	if n := len(fx.mail()["ada@example.test"]); n != 3 {
		t.Fatalf("%d messages after the window", n)
	}
}

// TestFrequencyCapCountsCampaigns: a campaign message delivered to the
// contact (a "delivered" event with a campaign in the MTA event log, which
// audience turns into last_sent) counts toward the cap across flows and
// campaigns: under a cap of 2, one flow message is sent, the next waits
// for the window.
func TestFrequencyCapCountsCampaigns(t *testing.T) {
	fx := newFixture(t, t.TempDir()+"/esp.db", Options{FrequencyCap: 2, FrequencyWindow: 24 * time.Hour})
	fx.svc.Delete(fx.ctx, "welcome")
	for _, id := range []string{"f1", "f2"} {
		if _, err := fx.svc.Save(fx.ctx, Flow{ID: id, Audience: fx.news.ID, From: "a@shop.example", Trigger: Trigger{Type: TriggerEvent, Event: id},
			Steps: []Step{{ID: "s", Type: StepSend, Template: "welcome-2"}}}); err != nil {
			t.Fatal(err)
		}
	}
	fx.contact("ada@example.test")
	if err := fx.q.AppendEvents(fx.ctx, []events.Event{{Type: "delivered", Time: fx.clk.Now(), Recipient: "ada@example.test", Campaign: "newsletter"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := fx.aud.ApplyEngagementEvents(fx.ctx, fx.q); err != nil || n != 1 {
		t.Fatalf("engagement events applied: %d, %v", n, err)
	}
	fx.clk.Add(time.Hour)
	for _, id := range []string{"f1", "f2"} {
		fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: id})
		fx.run()
		fx.clk.Add(time.Hour)
	}
	if n := len(fx.mail()["ada@example.test"]); n != 1 {
		t.Fatalf("%d flow messages after a campaign message under a cap of 2, want 1", n)
	}
	fx.clk.Add(23 * time.Hour)
	fx.run()
	if n := len(fx.mail()["ada@example.test"]); n != 2 {
		t.Fatalf("%d flow messages after the window, want 2", n)
	}
}

// TestScanTriggers: a renewal-date trigger a week before the date (not
// before 09:00 local time, once), and "did not open in 7 days" (an open
// in the event log resets the idle stretch).
func TestScanTriggers(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		fx.svc.Delete(fx.ctx, "welcome")
		for _, f := range []Flow{
			{ID: "renewal", Trigger: Trigger{Type: TriggerDate, Field: "renewal", OffsetDays: -7, At: "09:00"}, Steps: []Step{{ID: "s", Type: StepSend, Template: "welcome-2"}}},
			{ID: "winback", Trigger: Trigger{Type: TriggerNotOpened, Days: 7}, Steps: []Step{{ID: "s", Type: StepSend, Template: "welcome-3"}}},
		} {
			f.Audience, f.From = fx.news.ID, "a@shop.example"
			if _, err := fx.svc.Save(fx.ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		// Clock: 2026-03-03 10:00 UTC. Renewal on 2026-03-10 → due today
		// after 09:00 local; in Honolulu (UTC-10) it is 00:00 now.
		ada := fx.contact("ada@example.test")
		if _, _, err := fx.aud.UpsertContact(fx.ctx, fx.news.ID, audience.ContactInput{Email: ada.Email, Fields: map[string]any{"renewal": "2026-03-10"}}); err != nil {
			t.Fatal(err)
		}
		bob := fx.contact("bob@example.test")
		if _, _, err := fx.aud.UpsertContact(fx.ctx, fx.news.ID, audience.ContactInput{Email: bob.Email, TimeZone: ptr("Pacific/Honolulu"), Fields: map[string]any{"renewal": "2026-03-10"}}); err != nil {
			t.Fatal(err)
		}
		entered := func(flow string) int64 {
			t.Helper()
			st, err := fx.svc.Stats(fx.ctx, flow)
			if err != nil {
				t.Fatal(err)
			}
			return st.Entered
		}
		fx.svc.Scan(fx.ctx)
		fx.svc.Scan(fx.ctx)
		if n := entered("renewal"); n != 1 {
			t.Fatalf("renewal entered %d, want ada only", n)
		}
		fx.clk.Add(9 * time.Hour) // 09:00 in Honolulu, same local day
		fx.svc.Scan(fx.ctx)
		if n := entered("renewal"); n != 2 {
			t.Fatalf("renewal entered %d after 09:00 in Honolulu", n)
		}
		// Ada opens something on day 5; on day 8 only bob has been idle 7 days.
		fx.clk.Add(5 * 24 * time.Hour)
		// As a campaign's tracking token reports it: the contact id.
		fx.q.AppendEvents(fx.ctx, []events.Event{{Type: "opened", Time: fx.clk.Now(), Recipient: strconv.FormatInt(ada.ID, 10), Campaign: "c"}})
		fx.runWith(fx.q)
		fx.clk.Add(3 * 24 * time.Hour)
		fx.svc.Scan(fx.ctx)
		fx.run()
		if n := entered("winback"); n != 1 {
			t.Fatalf("winback entered %d, want bob only", n)
		}
		if js := fx.journal("bob@example.test"); !contains(js, "winback/s/sent") {
			t.Fatalf("bob: %v", js)
		}
	})
}
