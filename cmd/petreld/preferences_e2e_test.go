package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/policy/unsub"
)

// TestPreferenceCentreThroughDaemon: the public preference centre of a
// real petreld, with a token signed by its unsubscribe.key. The page
// (Traditional Chinese for a zh-TW browser) lists the address's two
// audiences; leaving one unsubscribes that contact only (no
// suppression); "unsubscribe from all" suppresses the address for
// marketing and unsubscribes the other contact; the daemon is then
// SIGKILLed and both changes are still there after the restart.
func TestPreferenceCentreThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.start()
	secret, err := unsub.LoadOrCreateSecret(filepath.Join(e.dataDir, "unsubscribe.key"))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := unsub.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	contacts := map[string]int64{}
	for _, n := range []string{"news", "offers"} {
		var a struct{ ID int64 }
		if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": n}, &a); err != nil || code != 201 {
			t.Fatalf("audience %s: %d %v", n, code, err)
		}
		ids[n] = a.ID
		var c struct{ ID int64 }
		if code, err := e.api("POST", fmt.Sprintf("/api/v1/audiences/%d/contacts", a.ID), map[string]any{"email": "ann@example.test"}, &c); err != nil || code != 201 {
			t.Fatalf("contact in %s: %d %v", n, code, err)
		}
		contacts[n] = c.ID
	}
	status := func(list string) string {
		var c struct{ Status string }
		if code, err := e.api("GET", fmt.Sprintf("/api/v1/audiences/%d/contacts/%d", ids[list], contacts[list]), nil, &c); err != nil || code != 200 {
			t.Fatalf("contact: %d %v", code, err)
		}
		return c.Status
	}
	tok := tokens.Make("marketing", "ann@example.test")
	do := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, "http://"+e.http+path, body) // no API key: public
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Accept-Language", "zh-TW,zh;q=0.9")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/unsubscribe/"+tok, nil)
	if code != 200 || !strings.Contains(body, `lang="zh-Hant"`) || !strings.Contains(body, ">news</label>") || !strings.Contains(body, ">offers</label>") {
		t.Fatalf("page: %d\n%s", code, body)
	}
	if code, body := do("POST", "/preferences/"+tok, url.Values{"action": {"save"}, "keep": {fmt.Sprint(ids["offers"])}}); code != 200 || !strings.Contains(body, "您的設定已儲存") {
		t.Fatalf("save: %d\n%s", code, body)
	}
	if status("news") != "unsubscribed" || status("offers") != "active" || e.suppressedIn("marketing", "ann@example.test") {
		t.Fatalf("after leaving news: news %s, offers %s, suppressed %v", status("news"), status("offers"), e.suppressedIn("marketing", "ann@example.test"))
	}
	if code, _ := do("POST", "/preferences/"+tok, url.Values{"action": {"all"}}); code != 200 {
		t.Fatalf("leave all: %d", code)
	}
	e.kill()
	e.start()
	if status("offers") != "unsubscribed" || !e.suppressedIn("marketing", "ann@example.test") {
		t.Fatalf("after leave-all and kill -9: offers %s, suppressed %v", status("offers"), e.suppressedIn("marketing", "ann@example.test"))
	}
	if code, body := do("GET", "/preferences/"+tok+"x", nil); code != 400 || strings.Contains(body, "ann@") {
		t.Fatalf("forged token: %d %s", code, body)
	}
}
