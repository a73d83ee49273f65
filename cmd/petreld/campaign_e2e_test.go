package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/url"
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

	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "news", "fields": []map[string]any{{"name": "city", "type": "text"}}}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	const n = 400
	var csv strings.Builder
	csv.WriteString("email,name,city\n")
	for i := 0; i < n; i++ {
		city := []string{"Taipei", "Oslo"}[i%2]
		fmt.Fprintf(&csv, "c%d@example.test,Contact %d,%s\n", i, i, city)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/api/v1/audiences/%d/imports?consent_purpose=marketing&consent_source=form", e.http, a.ID), strings.NewReader(csv.String()))
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

	spec := map[string]any{"id": "winter", "audience": a.ID, "segment": `city == "Taipei"`, "from": "news@shop.test", "from_name": "Shop",
		"subject": "Hello %first_name%", "text": "Dear %name%, news from %city%.\n", "page_size": 10, "rate": 150,
		"postal_address": "Shop Ltd, 1 Harbour Road, Taipei"}
	var bad struct {
		Error struct{ Code, Message string }
	}
	badSpec := map[string]any{"id": "bad", "audience": a.ID, "from": "news@shop.test", "subject": "Hi %nickname%", "text": "x", "postal_address": "x"}
	if code, _ := e.api("POST", "/api/v1/campaigns", badSpec, &bad); code != 400 || bad.Error.Code != "invalid_template" || !strings.Contains(bad.Error.Message, "1:4") {
		t.Fatalf("unknown field: %d %+v", code, bad)
	}
	noAddr := map[string]any{"id": "noaddr", "audience": a.ID, "from": "news@shop.test", "subject": "Hi", "text": "x"}
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
		code, err := e.api("GET", fmt.Sprintf("/api/v1/stats/segments?audience=%d&segment=%s", a.ID, url.QueryEscape(`city == "Taipei"`)), nil, &seg)
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
	resp, err = http.Post("http://"+e.http+link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
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
		e.api("GET", fmt.Sprintf("/api/v1/audiences/%d/contacts?limit=1", a.ID), nil, &page)
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
