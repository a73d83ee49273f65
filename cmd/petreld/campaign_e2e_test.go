package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestCampaignExactlyOnceThroughDaemon is the platform's flow end to end
// over loopback: a CSV import with consent into an audience of the
// embedded ESP database, a campaign to a segment of it, sent by the real
// petreld through ingest, queue and delivery to a real MX host — with
// petreld killed (SIGKILL) in the middle of the send. After the restart
// the campaign resumes by itself; every contact of the segment receives
// exactly one message (one Message-ID: delivery may redeliver one message
// across a kill, invariant 2, but the campaign never makes a second one),
// nobody outside the segment receives any, and the personalisation is
// the contact's own.
func TestCampaignExactlyOnceThroughDaemon(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	got := map[string]map[string]string{} // recipient -> Message-ID -> body
	e.mx(2, "example.test", testnet.MXScript{OnData: func(from string, rcpts []string, data []byte) error {
		id := header(t, data, "Message-Id")
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rcpts {
			if got[r] == nil {
				got[r] = map[string]string{}
			}
			got[r][id] = string(data)
		}
		return nil
	}})
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n"
	e.start()
	e.sendingDomain(t, "shop.test")

	const n = 400
	aid := e.importContacts(t, n)

	spec := map[string]any{"id": "winter", "audience": aid, "segment": `city == "Taipei"`, "from": "news@shop.test", "from_name": "Shop",
		"subject": "Hello %first_name%", "text": "Dear %name%, news from %city%.\n", "page_size": 10, "rate": 150,
		"postal_address": "Shop Ltd, 1 Harbour Road, Taipei"}
	var bad struct {
		Error struct{ Code, Message string }
	}
	badSpec := map[string]any{"id": "bad", "audience": aid, "from": "news@shop.test", "subject": "Hi %nickname%", "text": "x", "postal_address": "x"}
	if code, _ := e.api("POST", "/api/v1/campaigns", badSpec, &bad); code != 400 || bad.Error.Code != "invalid_template" || !strings.Contains(bad.Error.Message, "1:4") {
		t.Fatalf("unknown field: %d %+v", code, bad)
	}
	noAddr := map[string]any{"id": "noaddr", "audience": aid, "from": "news@shop.test", "subject": "Hi", "text": "x"}
	if code, _ := e.api("POST", "/api/v1/campaigns", noAddr, &bad); code != 400 || !strings.Contains(bad.Error.Message, "postal_address") {
		t.Fatalf("marketing campaign without a postal address: %d %+v", code, bad)
	}
	if code, err := e.api("POST", "/api/v1/campaigns", spec, nil); err != nil || code != 201 {
		t.Fatalf("create campaign: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/campaigns/winter/send", nil, nil); err != nil || code != 202 {
		t.Fatalf("send: %d %v", code, err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor(t, 30*time.Second, "the send under way", func() bool { return count() >= 30 })
	e.kill()
	killedAt := count()
	e.start()
	type campaignState struct {
		Status   string
		Progress struct {
			Sent    int64
			Skipped map[string]int64
			Done    bool
		}
	}
	var c campaignState
	waitFor(t, 60*time.Second, "campaign sent after the restart", func() bool {
		e.api("GET", "/api/v1/campaigns/winter", nil, &c)
		return c.Status == "sent"
	})
	waitFor(t, 30*time.Second, "every segment contact at the MX", func() bool { return count() >= n/2 })
	var list struct {
		Campaigns []struct {
			ID, Status string
			StartedAt  *time.Time `json:"started_at"`
			FinishedAt *time.Time `json:"finished_at"`
			Progress   struct{ Sent int64 }
		}
	}
	if code, err := e.api("GET", "/api/v1/campaigns?status=sent", nil, &list); err != nil || code != 200 || len(list.Campaigns) != 1 ||
		list.Campaigns[0].ID != "winter" || list.Campaigns[0].Progress.Sent != n/2 || list.Campaigns[0].StartedAt == nil || list.Campaigns[0].FinishedAt == nil {
		t.Fatalf("campaign list: %d %v %+v", code, err, list)
	}
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("c%d@example.test", i)
		msgs := got[addr]
		switch {
		case i%2 == 1 && len(msgs) != 0:
			t.Errorf("%s is outside the segment and got %d messages", addr, len(msgs))
		case i%2 == 0 && len(msgs) == 0:
			t.Errorf("%s got no message", addr)
		case len(msgs) > 1:
			twice++
		}
		for _, b := range msgs {
			if !strings.Contains(b, fmt.Sprintf("Dear Contact %d, news from Taipei.", i)) {
				t.Errorf("%s: body not personalised: %q", addr, b)
			}
			// The automatic footer: postal address and this contact's link.
			if !strings.Contains(b, "Shop Ltd, 1 Harbour Road, Taipei") || !strings.Contains(b, "Unsubscribe: https://mail.shop.test/unsubscribe/") ||
				!strings.Contains(b, "List-Unsubscribe:") {
				t.Errorf("%s: no compliance footer or List-Unsubscribe: %q", addr, b)
			}
		}
	}
	t.Logf("%d at the MX when killed; final: %d recipients, status %s, sent %d", killedAt, len(got), c.Status, c.Progress.Sent)
	if twice != 0 {
		t.Fatalf("%d contacts got two different messages", twice)
	}
	if c.Progress.Sent != n/2 || !c.Progress.Done {
		t.Fatalf("progress %+v, want %d sent", c.Progress, n/2)
	}
	// The stats by segment count each contact's delivery once, however
	// often a kill made the MX see it.
	var seg struct {
		Campaigns []string
		Delivered int64
	}
	waitFor(t, 20*time.Second, "segment stats", func() bool {
		code, err := e.api("GET", fmt.Sprintf("/api/v1/stats/segments?audience=%d&segment=%s", aid, url.QueryEscape(`city == "Taipei"`)), nil, &seg)
		return err == nil && code == 200 && seg.Delivered >= int64(n/2)
	})
	if seg.Delivered != int64(n/2) || len(seg.Campaigns) != 1 || seg.Campaigns[0] != "winter" {
		t.Fatalf("segment stats %+v, want %d delivered by campaign winter", seg, n/2)
	}
	// The footer's link unsubscribes the recipient (one-click POST), and
	// the contact's status follows.
	var link string
	for _, b := range got["c0@example.test"] {
		m, err := mail.ReadMessage(strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
		_, after, ok := strings.Cut(string(text), "Unsubscribe: https://mail.shop.test")
		if !ok {
			t.Fatalf("no unsubscribe link in %q", text)
		}
		link = strings.TrimSpace(strings.SplitN(after, "\n", 2)[0])
	}
	resp, err := http.Post("http://"+e.http+link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("one-click unsubscribe %s: %d", link, resp.StatusCode)
	}
	waitFor(t, 15*time.Second, "c0 unsubscribed in the audience", func() bool {
		var page struct {
			Contacts []struct{ Email, Status string }
		}
		e.api("GET", fmt.Sprintf("/api/v1/audiences/%d/contacts?limit=1", aid), nil, &page)
		return len(page.Contacts) == 1 && page.Contacts[0].Email == "c0@example.test" && page.Contacts[0].Status == "unsubscribed"
	})
}

// TestTransactionalTemplateThroughDaemon: an app saves a template over
// the API and sends it by call name with variables; the real MX receives
// the rendered message (variables HTML-escaped in the HTML part); an
// unknown call name is a 422 and a template with an undeclared variable
// is refused when saved.
func TestTransactionalTemplateThroughDaemon(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var got []string
	e.mx(2, "example.test", testnet.MXScript{OnData: func(from string, rcpts []string, data []byte) error {
		mu.Lock()
		got = append(got, string(data))
		mu.Unlock()
		return nil
	}})
	e.start()
	tpl := map[string]any{"call_name": "order-shipped", "name": "Order shipped", "subject": "Order %order_id% shipped",
		"html": "<p>Hello %name|there%, your order <b>%order_id%</b> is on its way.</p>", "variables": []string{"order_id", "name"}}
	if code, err := e.api("POST", "/api/v1/templates", tpl, nil); err != nil || code != 201 {
		t.Fatalf("save template: %d %v", code, err)
	}
	var bad struct {
		Error struct{ Code, Message string }
	}
	if code, _ := e.api("POST", "/api/v1/templates", map[string]any{"call_name": "x", "subject": "s", "text": "%undeclared%"}, &bad); code != 400 || bad.Error.Code != "invalid_template" {
		t.Fatalf("undeclared variable: %d %+v", code, bad)
	}
	req := map[string]any{"from": "shop@sender.test", "to": []string{"ann@example.test"}, "template": "order-shipped",
		"variables": map[string]string{"order_id": "<A-17>", "name": "Ann"}}
	if code, err := e.api("POST", "/api/v1/messages", req, nil); err != nil || code != 202 {
		t.Fatalf("send by call name: %d %v", code, err)
	}
	req["template"] = "nope"
	if code, _ := e.api("POST", "/api/v1/messages", req, &bad); code != 422 || bad.Error.Code != "unknown_template" {
		t.Fatalf("unknown template: %d %+v", code, bad)
	}
	waitFor(t, 15*time.Second, "the message at the MX", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	defer mu.Unlock()
	m, err := mail.ReadMessage(strings.NewReader(got[0]))
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Header.Get("Subject"); s != "Order <A-17> shipped" {
		t.Errorf("subject %q", s)
	}
	raw, _ := io.ReadAll(m.Body)
	body := decodeQP(string(raw))
	if !strings.Contains(body, "Hello Ann, your order <b>&lt;A-17&gt;</b> is on its way.") {
		t.Errorf("html part not rendered and escaped: %s", body)
	}
	if !strings.Contains(body, "Hello Ann, your order <A-17> is on its way.") {
		t.Errorf("generated text part missing: %s", body)
	}
}

func decodeQP(s string) string {
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(s)))
	if err != nil {
		return s
	}
	return string(b)
}

// importContacts creates the audience "news" (field city) and imports n
// contacts c<i>@example.test ("Contact <i>", city Taipei for even i,
// Oslo for odd) with a marketing grant, through the API; it returns the
// audience id.
func (e *env) importContacts(t *testing.T, n int) int64 {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("email,name,city\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "c%d@example.test,Contact %d,%s\n", i, i, []string{"Taipei", "Oslo"}[i%2])
	}
	return e.importCSV(t, "news", csv.String())
}

// importCSV creates an audience (custom field city) and imports csv into
// it with marketing consent, waiting for the import to finish.
func (e *env) importCSV(t *testing.T, name, csv string) int64 {
	t.Helper()
	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": name, "fields": []map[string]any{{"name": "city", "type": "text"}}}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/api/v1/audiences/%d/imports?consent_purpose=marketing&consent_source=form", e.http, a.ID), strings.NewReader(csv))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	var imp struct{ ID int64 }
	if err := json.Unmarshal(body, &imp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "import done", func() bool {
		var st struct{ State string }
		e.api("GET", fmt.Sprintf("/api/v1/imports/%d", imp.ID), nil, &st)
		return st.State == "done"
	})
	return a.ID
}

// campaignSink is a real MX host that records every message by
// recipient and Message-ID.
type campaignSink struct {
	mu  sync.Mutex
	got map[string]map[string]string // recipient -> Message-ID -> body
}

func (e *env) campaignSink(t *testing.T) *campaignSink {
	k := &campaignSink{got: map[string]map[string]string{}}
	e.mx(2, "example.test", testnet.MXScript{OnData: func(from string, rcpts []string, data []byte) error {
		id := header(t, data, "Message-Id")
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, r := range rcpts {
			if k.got[r] == nil {
				k.got[r] = map[string]string{}
			}
			k.got[r][id] = string(data)
		}
		return nil
	}})
	return k
}

func (k *campaignSink) count() int { k.mu.Lock(); defer k.mu.Unlock(); return len(k.got) }

type campaignView struct {
	Status, Error string
	Progress      struct {
		Sent    int64
		Skipped map[string]int64
		Done    bool
	}
	StartedAt   *time.Time `json:"started_at"`
	ScheduledAt *time.Time `json:"scheduled_at"`
}

func (e *env) campaign(id string) campaignView {
	var c campaignView
	e.api("GET", "/api/v1/campaigns/"+id, nil, &c)
	return c
}

// TestCampaignScheduleAndPauseThroughDaemon: a campaign scheduled a few
// seconds ahead while petreld is killed (SIGKILL) before its time starts
// when petreld comes back (it fell due while it was down); paused mid-send
// and killed, it stays paused across the restart (nothing more is
// submitted); resumed and killed again mid-send, it finishes after the
// restart — every contact receives exactly one message (one Message-ID),
// and the progress counts every contact once.
func TestCampaignScheduleAndPauseThroughDaemon(t *testing.T) {
	e := newEnv(t)
	k := e.campaignSink(t)
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n"
	e.start()
	e.sendingDomain(t, "shop.test")
	const n = 300
	aid := e.importContacts(t, n)
	var bad struct {
		Error struct{ Code, Message string }
	}
	spec := map[string]any{"id": "spring", "audience": aid, "from": "news@shop.test", "subject": "Hello %first_name%",
		"text": "Dear %name%, news from %city%.\n", "page_size": 10, "rate": 100, "postal_address": "Shop Ltd, 1 Harbour Road, Taipei",
		"schedule": map[string]any{"send_at": "2020-01-01T09:00", "time_zone": "Europe/Oslo"}}
	if code, _ := e.api("POST", "/api/v1/campaigns", spec, &bad); code != 400 || bad.Error.Code != "invalid_schedule" {
		t.Fatalf("schedule in the past: %d %+v", code, bad)
	}
	spec["schedule"] = map[string]any{"send_at": "2030-01-01T09:00", "time_zone": "Nowhere/Special"}
	if code, _ := e.api("POST", "/api/v1/campaigns", spec, &bad); code != 400 || bad.Error.Code != "invalid_schedule" {
		t.Fatalf("unknown time zone: %d %+v", code, bad)
	}
	due := time.Now().Add(3 * time.Second)
	spec["schedule"] = map[string]any{"send_at": due.In(time.FixedZone("", 8*3600)).Format("2006-01-02T15:04:05"), "time_zone": "Asia/Taipei"}
	if code, err := e.api("POST", "/api/v1/campaigns", spec, nil); err != nil || code != 201 {
		t.Fatalf("create scheduled campaign: %d %v", code, err)
	}
	if c := e.campaign("spring"); c.Status != "scheduled" || c.ScheduledAt == nil || c.ScheduledAt.Unix() != due.Unix() {
		t.Fatalf("scheduled: %+v (due %v)", c, due)
	}
	if code, _ := e.api("POST", "/api/v1/campaigns/spring/resume", nil, &bad); code != 409 || bad.Error.Code != "invalid_state" {
		t.Fatalf("resume of a scheduled campaign: %d %+v", code, bad)
	}
	e.kill()
	time.Sleep(time.Until(due) + time.Second)
	if k.count() != 0 {
		t.Fatalf("%d messages before the daemon is back", k.count())
	}
	e.start()
	waitFor(t, 30*time.Second, "the scheduled send under way", func() bool { return k.count() >= 40 })
	if c := e.campaign("spring"); c.StartedAt == nil || c.StartedAt.Before(due.Truncate(time.Second)) {
		t.Fatalf("started %+v", c)
	}
	if code, err := e.api("POST", "/api/v1/campaigns/spring/pause", nil, nil); err != nil || code != 200 {
		t.Fatalf("pause: %d %v", code, err)
	}
	e.kill()
	e.start()
	paused := e.campaign("spring")
	if paused.Status != "paused" || paused.Progress.Sent >= n {
		t.Fatalf("after pause and kill: %+v", paused)
	}
	time.Sleep(1500 * time.Millisecond)
	if c := e.campaign("spring"); c.Progress.Sent != paused.Progress.Sent {
		t.Fatalf("paused campaign went on: %d then %d", paused.Progress.Sent, c.Progress.Sent)
	}
	waitFor(t, 30*time.Second, "the paused part delivered", func() bool { return int64(k.count()) >= paused.Progress.Sent })
	// The kill may land between a page's commit to the spool and its
	// cursor's save: that page (page_size 10) is then at the MX but not
	// yet counted; the resume resubmits it as no-ops (idempotency keys),
	// and the end of this test checks nobody got two messages.
	time.Sleep(time.Second)
	if c := int64(k.count()); c < paused.Progress.Sent || c > paused.Progress.Sent+10 {
		t.Fatalf("%d at the MX while paused with %d sent (at most one uncounted page of 10)", c, paused.Progress.Sent)
	}
	if code, err := e.api("POST", "/api/v1/campaigns/spring/resume", nil, nil); err != nil || code != 200 {
		t.Fatalf("resume: %d %v", code, err)
	}
	waitFor(t, 30*time.Second, "more after the resume", func() bool { return int64(k.count()) >= paused.Progress.Sent+40 })
	e.kill()
	e.start()
	waitFor(t, 60*time.Second, "campaign sent", func() bool { return e.campaign("spring").Status == "sent" })
	waitFor(t, 30*time.Second, "every contact at the MX", func() bool { return k.count() >= n })
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("c%d@example.test", i)
		if len(k.got[addr]) != 1 {
			t.Errorf("%s got %d messages", addr, len(k.got[addr]))
		}
	}
	if c := e.campaign("spring"); c.Progress.Sent != n || !c.Progress.Done {
		t.Fatalf("progress %+v, want %d sent", c.Progress, n)
	}
}

// sendingDomain registers domain as a sending domain over the API,
// publishes every record it asks for in the test DNS and checks it, so
// it is verified (campaigns need at least usable).
func (e *env) sendingDomain(t *testing.T, domain string) {
	t.Helper()
	var info struct {
		Records []struct{ Kind, Zone string }
	}
	if code, err := e.api("POST", "/api/v1/domains", map[string]any{"domain": domain}, &info); err != nil || code != 201 {
		t.Fatalf("add domain %s: %d %v", domain, code, err)
	}
	for _, r := range info.Records {
		if r.Zone != "" {
			e.dns.Add(r.Zone)
		}
	}
	var res struct{ Status string }
	if code, err := e.api("POST", "/api/v1/domains/"+domain+"/check", nil, &res); err != nil || code != 200 || (res.Status != "usable" && res.Status != "verified") {
		t.Fatalf("check domain %s: %d %v %+v", domain, code, err, res)
	}
}

// TestCampaignPreSendCheckThroughDaemon: petreld with [esp]
// content_filter pointing at a real rspamd. A campaign from a domain
// that is not a registered sending domain, or with GTUBE content, is
// refused by send with 422 check_failed and the failing items (the
// GTUBE symbol from rspamd); POST .../check returns and stores the
// result; a clean campaign passes and is sent.
func TestCampaignPreSendCheckThroughDaemon(t *testing.T) {
	rspamd := testnet.Rspamd(t)
	e := newEnv(t)
	k := e.campaignSink(t)
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n[esp]\ncontent_filter = \"" + rspamd + "\"\nspam_threshold = 6.0\n"
	e.start()
	e.sendingDomain(t, "shop.test")
	aid := e.importContacts(t, 20)
	base := map[string]any{"audience": aid, "from": "news@shop.test", "subject": "Harbour market on Saturday",
		"html":           `<p>Dear %name%, the harbour market opens on Saturday with fresh fish from %city%.</p><p><a href="https://shop.test/market">See the stalls</a></p>`,
		"postal_address": "Shop Ltd, 1 Harbour Road, Taipei"}
	create := func(id string, change map[string]any) {
		spec := map[string]any{"id": id}
		for k, v := range base {
			spec[k] = v
		}
		for k, v := range change {
			spec[k] = v
		}
		if code, err := e.api("POST", "/api/v1/campaigns", spec, nil); err != nil || code != 201 {
			t.Fatalf("create %s: %d %v", id, code, err)
		}
	}
	type checkReply struct {
		Error struct{ Code, Message string }
		Check struct {
			OK    bool
			Items []struct{ Name, Status, Detail string }
			Spam  *struct {
				Score   float64
				Symbols []struct{ Name string }
			}
		}
	}
	failed := func(r checkReply, name, want string) bool {
		for _, it := range r.Check.Items {
			if it.Name == name && it.Status == "fail" && strings.Contains(it.Detail, want) {
				return true
			}
		}
		return false
	}
	create("spam", map[string]any{"html": "<p>Dear %name%, " + "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X" + "</p>"})
	var r checkReply
	if code, _ := e.api("POST", "/api/v1/campaigns/spam/send", nil, &r); code != 422 || r.Error.Code != "check_failed" || !failed(r, "content_filter", "GTUBE") || r.Check.Spam == nil {
		t.Fatalf("GTUBE send: %d %+v", code, r)
	}
	create("stranger", map[string]any{"from": "news@unregistered.test"})
	if code, _ := e.api("POST", "/api/v1/campaigns/stranger/send", nil, &r); code != 422 || !failed(r, "sending_domain", "unregistered.test") {
		t.Fatalf("unregistered domain: %d %+v", code, r)
	}
	create("clean", nil)
	var res struct {
		OK   bool
		Spam struct {
			Filter  string
			Score   float64
			Symbols []struct{ Name string }
		}
	}
	if code, err := e.api("POST", "/api/v1/campaigns/clean/check", nil, &res); err != nil || code != 200 || !res.OK || res.Spam.Filter != "rspamd" || len(res.Spam.Symbols) == 0 {
		t.Fatalf("check: %d %v %+v", code, err, res)
	}
	var stored struct {
		Check struct{ OK bool }
	}
	if e.api("GET", "/api/v1/campaigns/clean", nil, &stored); !stored.Check.OK {
		t.Fatalf("check not stored with the campaign: %+v", stored)
	}
	if code, err := e.api("POST", "/api/v1/campaigns/clean/send", nil, nil); err != nil || code != 202 {
		t.Fatalf("send clean: %d %v", code, err)
	}
	waitFor(t, 30*time.Second, "the clean campaign at the MX", func() bool { return k.count() == 20 })
	if c := e.campaign("spam"); c.Status != "draft" || c.Progress.Sent != 0 {
		t.Fatalf("blocked campaign: %+v", c)
	}
}

// TestCampaignCLIThroughDaemon drives templates and campaigns with
// petrelctl against the real daemon: a template saved from a file, a
// campaign pinned to it scheduled for later, listed, test-sent (the MX
// receives a marked message), checked, paused, resumed (back to
// scheduled, its time not come), cancelled; another sent to the end.
func TestCampaignCLIThroughDaemon(t *testing.T) {
	e := newEnv(t)
	k := e.campaignSink(t)
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n"
	e.start()
	e.sendingDomain(t, "shop.test")
	aid := e.importContacts(t, 10)
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(want int, args ...string) string {
		t.Helper()
		out, err := e.ctl(args...)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Fatalf("petrelctl %v: exit %d, want %d: %s", args, code, want, out)
		}
		return out
	}
	out := run(0, "templates", "save", write("t.json", map[string]any{"call_name": "weekly", "type": "marketing", "subject": "Weekly for %first_name%",
		"text": "News from %city%.\n", "variables": []string{"first_name", "city"}}))
	if !strings.Contains(out, "template weekly version 1") {
		t.Fatalf("templates save: %s", out)
	}
	spec := map[string]any{"id": "weekly-1", "audience": aid, "template": "weekly", "from": "news@shop.test", "postal_address": "Shop Ltd, Taipei"}
	if out = run(0, "campaigns", "create", write("c.json", spec)); !strings.Contains(out, "weekly-1\tdraft") {
		t.Fatalf("create: %s", out)
	}
	if out = run(0, "campaigns", "schedule", "weekly-1", "--at", "2099-06-01T09:00", "--tz", "Europe/Oslo"); !strings.Contains(out, "scheduled\tsent 0, skipped 0\tat 2099-06-01T07:00:00Z") {
		t.Fatalf("schedule: %s", out)
	}
	run(1, "campaigns", "schedule", "weekly-1", "--at", "2099-06-01T09:00", "--tz", "Atlantis/Capital")
	if out = run(0, "campaigns", "list", "--status", "scheduled"); !strings.HasPrefix(out, "weekly-1\tscheduled") {
		t.Fatalf("list: %s", out)
	}
	if out = run(0, "campaigns", "test", "weekly-1", "boss@example.test"); !strings.Contains(out, "boss@example.test\tqueued ") {
		t.Fatalf("test: %s", out)
	}
	waitFor(t, 15*time.Second, "the test message", func() bool { return k.count() == 1 })
	k.mu.Lock()
	for _, b := range k.got["boss@example.test"] {
		if !strings.Contains(b, "Subject: [Test] Weekly for") || !strings.Contains(b, "X-Petrel-Test: campaign weekly-1") {
			t.Errorf("test message %q", b)
		}
	}
	k.mu.Unlock()
	if out = run(0, "campaigns", "check", "weekly-1"); !strings.Contains(out, "pass\tsending_domain\tshop.test") || !strings.Contains(out, "warn\tcontent_filter") {
		t.Fatalf("check: %s", out)
	}
	run(0, "campaigns", "pause", "weekly-1")
	if out = run(0, "campaigns", "resume", "weekly-1"); !strings.Contains(out, "weekly-1\tscheduled") {
		t.Fatalf("resume: %s", out)
	}
	if out = run(0, "campaigns", "cancel", "weekly-1"); !strings.Contains(out, "weekly-1\tcancelled") {
		t.Fatalf("cancel: %s", out)
	}
	run(1, "campaigns", "resume", "weekly-1")
	spec["id"] = "weekly-2"
	run(0, "campaigns", "create", write("c2.json", spec))
	run(0, "campaigns", "send", "weekly-2")
	waitFor(t, 30*time.Second, "weekly-2 sent", func() bool { return e.campaign("weekly-2").Status == "sent" })
	waitFor(t, 30*time.Second, "all at the MX", func() bool { return k.count() == 11 })
	out = run(0, "-json", "campaigns", "list")
	var list struct {
		Campaigns []struct{ ID, Status string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Campaigns) != 2 || list.Campaigns[0].ID != "weekly-2" || list.Campaigns[0].Status != "sent" {
		t.Fatalf("list -json: %v %s", err, out)
	}
}
