package main

// A database API key's stream and sending domains are enforced at ingest
// (issue 15: keys "with scopes, streams and sending domains they may
// use"), through the real daemon over its HTTP socket.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// post sends body as JSON with the bearer key and returns the status and
// the decoded answer.
func post(t *testing.T, url, key string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %s", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// TestDatabaseKeyScopeAtIngest: a key made on the keys page (POST
// /api/v1/keys) with sending domains may send only from those domains
// (or their subdomains), in the From field and the envelope alike, and
// only in its stream (the request's stream field or the message's
// X-Petrel-Stream field cannot move it); a refusal is 403 with a JSON error naming the
// limit, and queues nothing. A key without domains may use any domain
// but still only its stream; a configured key is not limited.
func TestDatabaseKeyScopeAtIngest(t *testing.T) {
	d, _ := inProcess(t, nil)
	base := "http://" + d.cfg.HTTP.Listen
	mkKey := func(name, stream string, domains []string) string {
		code, out := post(t, base+"/api/v1/keys", testKey, map[string]any{"name": name, "role": "marketer", "stream": stream, "domains": domains})
		secret, _ := out["secret"].(string)
		if code != 201 || secret == "" {
			t.Fatalf("create key %s: %d %v", name, code, out)
		}
		return secret
	}
	shop := mkKey("shop", "transactional", []string{"Shop.test"})
	anyDomain := mkKey("any", "marketing", nil)

	n := 0
	rcpt0 := func(i int) string { return fmt.Sprintf("r%d@example.test", i) }
	rcpt := func() string { n++; return rcpt0(n) }
	events := func(to string) []any {
		t.Helper()
		var ev struct{ Events []any }
		if c, body := request(t, "GET", base+"/api/v1/events?recipient="+to, testKey); c != 200 || json.Unmarshal([]byte(body), &ev) != nil {
			t.Fatalf("events: %d %s", c, body)
		}
		return ev.Events
	}
	var refused []string
	lastAccepted := ""
	for _, tt := range []struct {
		name  string
		key   string
		body  map[string]any
		code  int
		error string // the JSON error code of a refusal
	}{
		{"own domain", shop, map[string]any{"from": "a@shop.test", "subject": "s", "text": "t"}, 202, ""},
		{"own domain, any case", shop, map[string]any{"from": "Alice <a@SHOP.test>", "subject": "s", "text": "t"}, 202, ""},
		{"subdomain", shop, map[string]any{"from": "a@news.shop.test", "subject": "s", "text": "t"}, 202, ""},
		{"own stream named", shop, map[string]any{"from": "a@shop.test", "subject": "s", "text": "t", "stream": "transactional"}, 202, ""},
		{"other domain", shop, map[string]any{"from": "a@other.test", "subject": "s", "text": "t"}, 403, "domain_not_allowed"},
		{"suffix is not a subdomain", shop, map[string]any{"from": "a@evilshop.test", "subject": "s", "text": "t"}, 403, "domain_not_allowed"},
		{"raw From of another domain", shop, map[string]any{"from": "a@shop.test", "raw": "From: x@other.test\r\nSubject: s\r\n\r\nbody\r\n"}, 403, "domain_not_allowed"},
		{"raw without From, envelope of another domain", shop, map[string]any{"from": "a@other.test", "raw": "Subject: s\r\n\r\nbody\r\n"}, 403, "domain_not_allowed"},
		{"other stream in the request", shop, map[string]any{"from": "a@shop.test", "subject": "s", "text": "t", "stream": "marketing"}, 403, "stream_not_allowed"},
		{"other stream in X-Petrel-Stream", shop, map[string]any{"from": "a@shop.test", "raw": "From: a@shop.test\r\nX-Petrel-Stream: marketing\r\nSubject: s\r\n\r\nbody\r\n"}, 403, "stream_not_allowed"},
		{"key without domains: any domain", anyDomain, map[string]any{"from": "a@other.test", "subject": "s", "text": "t"}, 202, ""},
		{"key without domains: its stream only", anyDomain, map[string]any{"from": "a@other.test", "subject": "s", "text": "t", "stream": "transactional"}, 403, "stream_not_allowed"},
		{"configured key: not limited", testKey, map[string]any{"from": "a@other.test", "subject": "s", "text": "t", "stream": "marketing"}, 202, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			to := rcpt()
			tt.body["to"] = []string{to}
			code, out := post(t, base+"/api/v1/messages", tt.key, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %v", code, tt.code, out)
			}
			if tt.code != 202 {
				e, _ := out["error"].(map[string]any)
				if e["code"] != tt.error || e["message"] == "" {
					t.Errorf("error %v, want code %s", out, tt.error)
				}
				refused = append(refused, to)
				return
			}
			if id, _ := out["id"].(string); id == "" {
				t.Errorf("accepted without an id: %v", out)
			}
			// An event becomes visible once every event before it is
			// committed (readers' cursors never skip one), so a reader
			// polls: a concurrent writer may hold an earlier sequence.
			if !testnet.Wait(5*time.Second, func() bool { return len(events(to)) > 0 }) {
				t.Errorf("accepted %v but no queued event for %s after 5 s", out, to)
			}
			lastAccepted = to
		})
	}
	// The last case was accepted and its event is visible, so every
	// earlier event is too: a refused message must have left none.
	if lastAccepted != rcpt0(n) {
		t.Fatalf("the table must end with an accepted case")
	}
	for _, to := range refused {
		if ev := events(to); len(ev) != 0 {
			t.Errorf("a refused message left events for %s: %v", to, ev)
		}
	}
}
