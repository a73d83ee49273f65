package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestFlowsExactlyOnceThroughDaemon is an automation flow end to end
// over loopback through the real petreld: contacts imported with
// consent, a flow applied with petrelctl from a TOML file (trigger: a
// custom event; send; wait 4 s; send), 200 custom events posted over the
// API, and petreld killed with SIGKILL twice — once while the contacts
// wait and the first messages go out, once while the second messages go
// out. After the restarts every contact has exactly one message of each
// step at the real MX (one Message-ID each: delivery may redeliver a
// message across a kill, invariant 2, but the flow never makes a second
// one), with the event's property rendered in; the counts say 400 sent,
// the journey names each step; the shipped examples apply; an event for
// an unknown contact is a 404.
func TestFlowsExactlyOnceThroughDaemon(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	got := map[string]map[string]string{} // recipient -> Message-ID -> subject
	e.mx(2, "example.test", testnet.MXScript{OnData: func(from string, rcpts []string, data []byte) error {
		id := header(t, data, "Message-Id")
		subj := header(t, data, "Subject")
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rcpts {
			if got[r] == nil {
				got[r] = map[string]string{}
			}
			got[r][id] = subj
		}
		return nil
	}})
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n"
	e.start()

	for _, name := range []string{"e2e", "newsletter"} {
		if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": name}, nil); err != nil || code != 201 {
			t.Fatalf("create audience %s: %d %v", name, code, err)
		}
	}
	var auds struct {
		Audiences []struct {
			ID   int64
			Name string
		}
	}
	e.api("GET", "/api/v1/audiences", nil, &auds)
	var aid int64
	for _, a := range auds.Audiences {
		if a.Name == "e2e" {
			aid = a.ID
		}
	}
	const n = 200
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "c%d@example.test,Contact %d\n", i, i)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/api/v1/audiences/%d/imports?consent_purpose=marketing&consent_source=form", e.http, aid), strings.NewReader(csv.String()))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var imp struct{ ID int64 }
	if resp.StatusCode/100 != 2 || json.Unmarshal(body, &imp) != nil {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	waitFor(t, 30*time.Second, "import done", func() bool {
		var st struct{ State string }
		e.api("GET", fmt.Sprintf("/api/v1/imports/%d", imp.ID), nil, &st)
		return st.State == "done"
	})
	for _, tp := range []map[string]any{
		{"call_name": "drip-1", "type": "marketing", "subject": "Drip one for %first_name%", "text": "Your code %event.code%. %unsubscribe_url%", "variables": []string{"first_name", "event.code"}},
		{"call_name": "drip-2", "type": "marketing", "subject": "Drip two", "text": "Still %event.code%. %unsubscribe_url%", "variables": []string{"event.code"}},
		{"call_name": "welcome-1", "type": "marketing", "subject": "Welcome", "text": "Hi. %unsubscribe_url%"},
		{"call_name": "welcome-2", "type": "marketing", "subject": "Tips", "text": "Tips. %unsubscribe_url%"},
		{"call_name": "welcome-3", "type": "marketing", "subject": "Offer", "text": "Offer. %unsubscribe_url%"},
		{"call_name": "cart-reminder-1", "type": "marketing", "subject": "Cart", "text": "%event.cart_url% %unsubscribe_url%", "variables": []string{"event.cart_url"}},
		{"call_name": "cart-reminder-2", "type": "marketing", "subject": "Cart again", "text": "%event.cart_url% %unsubscribe_url%", "variables": []string{"event.cart_url"}},
	} {
		if code, err := e.api("POST", "/api/v1/templates", tp, nil); err != nil || code != 201 {
			t.Fatalf("template %v: %d %v", tp["call_name"], code, err)
		}
	}
	drip := filepath.Join(t.TempDir(), "drip.toml")
	os.WriteFile(drip, []byte(`id = "drip"
audience_name = "e2e"
from = "news@shop.test"
reentry = { policy = "once" }
[trigger]
type = "event"
event = "signup"
[[steps]]
id = "one"
type = "send"
template = "drip-1"
[[steps]]
id = "pause"
type = "wait"
duration = "4s"
[[steps]]
id = "two"
type = "send"
template = "drip-2"
`), 0o600)
	examples, _ := filepath.Glob(filepath.Join("..", "..", "examples", "flows", "*.toml"))
	if out, err := e.ctl(append([]string{"flows", "apply", drip}, examples...)...); err != nil || !strings.Contains(out, "flow drip version 1") ||
		!strings.Contains(out, "flow welcome version 1") || !strings.Contains(out, "flow abandoned-cart version 1") {
		t.Fatalf("flows apply: %v\n%s", err, out)
	}
	cyclic := filepath.Join(t.TempDir(), "cyclic.toml")
	os.WriteFile(cyclic, []byte("id = \"loop\"\naudience_name = \"e2e\"\nfrom = \"a@shop.test\"\n[trigger]\ntype = \"joined\"\n[[steps]]\nid = \"a\"\ntype = \"tag\"\ntag = \"x\"\nnext = \"a\"\n"), 0o600)
	if out, err := e.ctl("flows", "apply", cyclic); err == nil || !strings.Contains(out, "cycle") {
		t.Fatalf("cyclic flow applied: %v\n%s", err, out)
	}
	var bad struct{ Error struct{ Code string } }
	if code, _ := e.api("POST", "/api/v1/events/custom", map[string]any{"contact": "nobody@example.test", "name": "signup"}, &bad); code != 404 || bad.Error.Code != "unknown_contact" {
		t.Fatalf("unknown contact: %d %+v", code, bad)
	}
	for i := 0; i < n; i++ {
		ev := map[string]any{"contact": fmt.Sprintf("c%d@example.test", i), "name": "signup", "properties": map[string]any{"code": fmt.Sprintf("K%d", i)}}
		if code, err := e.api("POST", "/api/v1/events/custom", ev, nil); err != nil || code != 202 {
			t.Fatalf("event %d: %d %v", i, code, err)
		}
	}
	count := func(subject string) int {
		mu.Lock()
		defer mu.Unlock()
		c := 0
		for _, ms := range got {
			for _, s := range ms {
				if strings.HasPrefix(s, subject) {
					c++
				}
			}
		}
		return c
	}
	// Kill while runs wait and the first messages go out.
	waitFor(t, 30*time.Second, "first messages under way", func() bool { return count("Drip one") >= 10 })
	e.kill()
	e.start()
	waitFor(t, 60*time.Second, "second messages under way", func() bool { return count("Drip two") >= 10 })
	e.kill()
	killedAt := count("Drip two")
	e.start()
	waitFor(t, 60*time.Second, "every contact's second message", func() bool { return count("Drip two") >= n })
	var st struct {
		Sent    int64
		Entered int64
		Active  int64
	}
	waitFor(t, 30*time.Second, "the flow's counts", func() bool {
		e.api("GET", "/api/v1/flows/drip/stats", nil, &st)
		return st.Sent == 2*n && st.Active == 0
	})
	time.Sleep(2 * time.Second) // anything duplicated would arrive now
	mu.Lock()
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("c%d@example.test", i)
		one, two := 0, 0
		for _, s := range got[addr] {
			switch {
			case strings.HasPrefix(s, "Drip one for Contact"):
				one++
			case s == "Drip two":
				two++
			}
		}
		if one != 1 || two != 1 {
			t.Errorf("%s: %d first and %d second messages, want 1 and 1 (%v)", addr, one, two, got[addr])
		}
	}
	mu.Unlock()
	t.Logf("second messages at the MX when killed the second time: %d; stats %+v", killedAt, st)
	if st.Entered != n {
		t.Fatalf("entered %d, want %d", st.Entered, n)
	}
	out, err := e.ctl("flows", "journey", "c7@example.test")
	if err != nil || !strings.Contains(out, "drip v1\tone\tsent") || !strings.Contains(out, "drip v1\tpause\twaited") || !strings.Contains(out, "drip v1\ttwo\tsent") {
		t.Fatalf("journey: %v\n%s", err, out)
	}
}
