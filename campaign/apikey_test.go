package campaign

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/tracking"
)

// TestSendUnderAPIKey: a Send under a database API key hands ingest its
// limits with every message, so Submit (the real one, over a real Pebble
// queue) refuses every message a key limited to another domain or stream
// may not send, and the messages a key allows carry its name in the
// trace, as ingest's HTTP API records a key.
func TestSendUnderAPIKey(t *testing.T) {
	ctx := context.Background()
	e, q := newTestEngine(t)
	tpl, _ := Compile(Content{Subject: "s", Text: "hi %first_name%"}, nil)
	from := &mail.Address{Address: "news@shop.test"}
	for _, tt := range []struct {
		id   string
		key  httpapi.Key
		sent int64
	}{
		{"other-domain", httpapi.Key{Name: "other", Stream: "marketing", StreamOnly: true, Domains: []string{"other.test"}}, 0},
		{"other-stream", httpapi.Key{Name: "tx", Stream: "transactional", StreamOnly: true, Domains: []string{"shop.test"}}, 0},
		{"allowed", httpapi.Key{Name: "shop-news", Stream: "marketing", StreamOnly: true, Domains: []string{"shop.test"}}, 9},
	} {
		st, err := e.Run(ctx, Send{ID: tt.id, Template: tpl, From: from, Key: &tt.key}, genSource{n: 10})
		if err != nil || !st.Done || st.Sent != tt.sent || st.Sent+st.Skipped["refused"] != 9 {
			t.Errorf("%s: %+v %v, want %d sent and the rest refused", tt.id, st, err, tt.sent)
		}
	}
	if s := q.Stats(); s.Messages != 9 {
		t.Fatalf("%d messages queued, want 9 (only the allowed send's)", s.Messages)
	}
	rcpts, _, err := q.List(ctx, "", 100)
	if err != nil || len(rcpts) != 9 {
		t.Fatalf("queue list: %d %v", len(rcpts), err)
	}
	body, err := q.Body(rcpts[0].MsgID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "from api-key=shop-news") {
		t.Errorf("message under key shop-news does not name it in its trace:\n%s", body)
	}
}

// TestCampaignAPIKeyHTTP: over the campaign API's real handler (on a
// loopback socket) on SQLite and PostgreSQL, a campaign whose api_key
// names no key is 400 unknown_api_key; one whose key may not send from
// its From domain (or an A/B variant's) or in its stream is 403
// domain_not_allowed / stream_not_allowed naming the limit, and is not
// stored; one the key allows records the key (api_key column, NULL for
// a campaign without one); scheduling it after the owner narrowed the
// key is refused the same way; GET /api/v1/sending-keys lists the keys.
func TestCampaignAPIKeyHTTP(t *testing.T) {
	eachBackend(t, 3, func(t *testing.T, e *svcEnv) {
		keys := []httpapi.Key{
			{Name: "shop", Stream: "marketing", StreamOnly: true, Domains: []string{"shop.test"}},
			{Name: "tx", Stream: "transactional", StreamOnly: true},
		}
		e.opts.Keys = func(context.Context) ([]httpapi.Key, error) { return append([]httpapi.Key(nil), keys...), nil }
		e.svc.SetOptions(e.opts)
		// X-Test-Key names the database key a request is authenticated
		// as (admin's auth puts it in the context the same way).
		h := e.svc.Handler()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, k := range keys {
				if k.Name == r.Header.Get("X-Test-Key") {
					r = r.WithContext(httpapi.WithKey(r.Context(), k))
				}
			}
			h.ServeHTTP(w, r)
		}))
		defer srv.Close()
		as := ""
		call := func(method, path string, body any) (int, map[string]any) {
			t.Helper()
			b, _ := json.Marshal(body)
			req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(b))
			req.Header.Set("X-Test-Key", as)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatalf("%s %s: %d, not JSON: %v", method, path, resp.StatusCode, err)
			}
			return resp.StatusCode, out
		}
		errOf := func(out map[string]any) (code, msg string) {
			m, _ := out["error"].(map[string]any)
			code, _ = m["code"].(string)
			msg, _ = m["message"].(string)
			return
		}
		spec := func(id, key, from string) map[string]any {
			sp := map[string]any{"id": id, "audience": e.aid, "from": from, "subject": "s", "text": "t", "postal_address": "1 Road"}
			if key != "" {
				sp["api_key"] = key
			}
			return sp
		}
		ab := spec("d", "shop", "news@shop.test")
		ab["ab"] = map[string]any{"variants": []map[string]any{{"name": "a"}, {"name": "b", "from": "news@other.test"}}, "percent": 20}
		for _, tt := range []struct {
			name   string
			spec   map[string]any
			status int
			code   string
			msg    string
		}{
			{"unknown key", spec("a", "nope", "news@shop.test"), 400, "unknown_api_key", `"nope"`},
			{"other domain", spec("b", "shop", "news@other.test"), 403, "domain_not_allowed", "its sending domains: shop.test"},
			{"suffix is not a subdomain", spec("b2", "shop", "news@evilshop.test"), 403, "domain_not_allowed", `"evilshop.test"`},
			{"other stream", spec("c", "tx", "news@shop.test"), 403, "stream_not_allowed", "only in stream transactional"},
			{"A/B variant from another domain", ab, 403, "domain_not_allowed", `"other.test"`},
		} {
			code, out := call("POST", "/api/v1/campaigns", tt.spec)
			ec, msg := errOf(out)
			if code != tt.status || ec != tt.code || !strings.Contains(msg, tt.msg) {
				t.Errorf("%s: %d %v, want %d %s naming %s", tt.name, code, out, tt.status, tt.code, tt.msg)
			}
			if c, _ := call("GET", "/api/v1/campaigns/"+tt.spec["id"].(string), nil); c != 404 {
				t.Errorf("%s: refused campaign stored (%d)", tt.name, c)
			}
		}
		code, out := call("POST", "/api/v1/campaigns", spec("e", "shop", "news@news.shop.test"))
		if sp, _ := out["spec"].(map[string]any); code != 201 || sp["api_key"] != "shop" {
			t.Fatalf("allowed: %d %v", code, out)
		}
		if code, out := call("POST", "/api/v1/campaigns", spec("f", "", "news@shop.test")); code != 201 {
			t.Fatalf("no key: %d %v", code, out)
		}
		for id, want := range map[string]sql.NullString{"e": {String: "shop", Valid: true}, "f": {}} {
			var col sql.NullString
			if err := e.aud.DB().QueryRowContext(e.ctx, "SELECT api_key FROM campaigns WHERE id = '"+id+"'").Scan(&col); err != nil || col != want {
				t.Errorf("campaign %s: api_key column %+v %v, want %+v", id, col, err, want)
			}
		}
		if code, out := call("GET", "/api/v1/sending-keys", nil); code != 200 || fmt.Sprint(out["keys"]) != "[map[domains:[shop.test] name:shop stream:marketing] map[domains:[] name:tx stream:transactional]]" {
			t.Errorf("sending keys: %d %v", code, out)
		}
		// A request made with the database key "shop" creates campaigns
		// under it (none named: its own, and its limits apply; another
		// key named: 403) and runs only those.
		as = "shop"
		code, out = call("POST", "/api/v1/campaigns", spec("g", "", "news@shop.test"))
		if sp, _ := out["spec"].(map[string]any); code != 201 || sp["api_key"] != "shop" {
			t.Errorf("a key's campaign without api_key: %d %v, want it under shop", code, out)
		}
		code, out = call("POST", "/api/v1/campaigns", spec("g2", "", "news@other.test"))
		if ec, _ := errOf(out); code != 403 || ec != "domain_not_allowed" {
			t.Errorf("a key's campaign without api_key from another domain: %d %v, want 403 domain_not_allowed", code, out)
		}
		code, out = call("POST", "/api/v1/campaigns", spec("h", "tx", "news@shop.test"))
		if ec, _ := errOf(out); code != 403 || ec != "key_not_allowed" {
			t.Errorf("a key naming another key: %d %v, want 403 key_not_allowed", code, out)
		}
		for _, action := range []string{"send", "test", "resume"} {
			code, out = call("POST", "/api/v1/campaigns/f/"+action, map[string]any{"to": []string{"x@shop.test"}})
			if ec, _ := errOf(out); code != 403 || ec != "key_not_allowed" {
				t.Errorf("key shop running campaign f (no key) by %s: %d %v, want 403 key_not_allowed", action, code, out)
			}
		}
		as = ""
		// The owner narrows the key: scheduling (and sending) is refused.
		keys[0].Domains = []string{"other.test"}
		code, out = call("POST", "/api/v1/campaigns/e/schedule", map[string]any{"send_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
		if ec, msg := errOf(out); code != 403 || ec != "domain_not_allowed" || !strings.Contains(msg, "other.test") {
			t.Errorf("schedule after narrowing: %d %v", code, out)
		}
		code, out = call("POST", "/api/v1/campaigns/e/send", nil)
		if ec, _ := errOf(out); code != 403 || ec != "domain_not_allowed" {
			t.Errorf("send after narrowing: %d %v", code, out)
		}
	})
}

// TestCampaignFollowsKeyTracking: a campaign under an API key is tracked
// as that key's switches say (tracking.Settings, real, on the ESP
// database), over its From domain's, as the key's own messages are; one
// without a key follows the domain.
func TestCampaignFollowsKeyTracking(t *testing.T) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	eachBackend(t, 2, func(t *testing.T, e *svcEnv) {
		set, err := tracking.NewSettings(e.ctx, e.aud.DB(), e.aud.Postgres())
		if err != nil {
			t.Fatal(err)
		}
		off := false
		if _, err := set.Set(e.ctx, tracking.ScopeKey, "quiet", tracking.Switches{Opens: &off, Clicks: &off}); err != nil {
			t.Fatal(err)
		}
		e.opts.Keys = func(context.Context) ([]httpapi.Key, error) {
			return []httpapi.Key{{Name: "quiet", Stream: "marketing", StreamOnly: true}}, nil
		}
		e.opts.Tracking = &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" },
			Defaults: func(key, domain string) (bool, bool) { f := set.For(key, domain); return f.Opens, f.Clicks }}
		e.svc.SetOptions(e.opts)
		if err := e.svc.Start(e.svcCtx); err != nil {
			t.Fatal(err)
		}
		// c0 lives in Taipei, c1 in Oslo.
		for _, c := range []struct{ id, key, city string }{{"keyed", "quiet", "Taipei"}, {"plain", "", "Oslo"}} {
			sp := e.spec(c.id)
			sp.APIKey, sp.Segment = c.key, `city == "`+c.city+`"`
			sp.Text, sp.HTML = "", `<p>Hi %name%</p><p><a href="https://shop.test/sale">Sale</a></p>`
			if _, err := e.svc.Create(e.ctx, sp); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Send(e.ctx, c.id); err != nil {
				t.Fatal(err)
			}
		}
		var got map[string][]string
		if !testnet.Wait(10*time.Second, func() bool {
			got = e.queued(t)
			return len(got["c0@example.test"]) == 1 && len(got["c1@example.test"]) == 1
		}) {
			t.Fatalf("queued: %v", got)
		}
		keyed, plain := unQP(got["c0@example.test"][0]), unQP(got["c1@example.test"][0])
		if strings.Contains(keyed, "/t/o/") || clickToken.MatchString(keyed) || !strings.Contains(keyed, `href="https://shop.test/sale"`) {
			t.Errorf("campaign under key quiet (opens and clicks off) is tracked:\n%s", keyed)
		}
		if !strings.Contains(plain, "/t/o/") || !clickToken.MatchString(plain) {
			t.Errorf("campaign without a key is not tracked (domain default on):\n%s", plain)
		}
	})
}
