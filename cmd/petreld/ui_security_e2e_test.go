package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// call sends an API request with the client's cookie (and csrf, when
// set) and returns the status and the error code of a JSON error.
func call(t *testing.T, e *env, c *http.Client, method, path, csrf, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+e.http+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, eb.Error.Code
}

// TestDashboardSecurity checks the session rules against a real petreld:
// the cookie's attributes; CSRF (an unsafe cookie request without the
// token, with a wrong one, or cross-origin is 403; with it, it works;
// a bearer key needs none); roles (a viewer reads but cannot create or
// send; a marketer cannot manage users or keys); session fixation (a
// session id planted before login is not the one issued, does not
// authenticate, and a re-login ends the old session); logout ends the
// session; the login rate limit (429 after 5 failures, even with the
// right password).
func TestDashboardSecurity(t *testing.T) {
	e := uiDaemon(t, nil)
	for _, u := range []struct{ email, role string }{{"viewer@shop.test", "viewer"}, {"marketer@shop.test", "marketer"}} {
		if code, err := e.api("POST", "/api/v1/users", map[string]string{"email": u.email, "password": uiPassword, "role": u.role}, nil); err != nil || code != 201 {
			t.Fatalf("add %s: %d %v", u.role, code, err)
		}
	}
	// Cookie attributes.
	resp, err := http.Post("http://"+e.http+"/ui/login", "application/json", strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, uiOwner, uiPassword)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sc := resp.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || !strings.Contains(sc, "Path=/") {
		t.Errorf("session cookie %q lacks HttpOnly, SameSite=Strict or Path=/", sc)
	}

	owner := loginClient(t, e, uiOwner, uiPassword)
	tok := csrfOf(t, e, owner)
	for _, tt := range []struct {
		name, csrf string
		origin     string
		code       int
		errCode    string
	}{
		{"no token", "", "", 403, "csrf"},
		{"wrong token", "x" + tok, "", 403, "csrf"},
		{"cross origin", tok, "http://evil.test", 403, "cross_origin"},
		{"token", tok, "", 201, ""},
	} {
		req, _ := http.NewRequest("POST", "http://"+e.http+"/api/v1/audiences", strings.NewReader(`{"name":"csrf `+tt.name+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if tt.csrf != "" {
			req.Header.Set("X-CSRF-Token", tt.csrf)
		}
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb struct {
			Error struct{ Code string } `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != tt.code || eb.Error.Code != tt.errCode {
			t.Errorf("POST with %s: %d %q, want %d %q", tt.name, resp.StatusCode, eb.Error.Code, tt.code, tt.errCode)
		}
	}
	if code, err := e.api("POST", "/api/v1/audiences", map[string]string{"name": "by key"}, nil); err != nil || code != 201 {
		t.Errorf("POST with the bearer key and no CSRF token: %d %v", code, err)
	}
	// The campaign the viewer must not send.
	spec := map[string]any{"id": "sec", "audience": 1, "from": "news@shop.test", "subject": "s", "text": "t", "postal_address": "Shop Ltd, 1 Road"}
	if code, err := e.api("POST", "/api/v1/campaigns", spec, nil); err != nil || code != 201 {
		t.Fatalf("create campaign: %d %v", code, err)
	}

	viewer := loginClient(t, e, "viewer@shop.test", uiPassword)
	vt := csrfOf(t, e, viewer)
	marketer := loginClient(t, e, "marketer@shop.test", uiPassword)
	mt := csrfOf(t, e, marketer)
	for _, tt := range []struct {
		who          string
		c            *http.Client
		csrf         string
		method, path string
		body         string
		code         int
	}{
		{"viewer", viewer, vt, "GET", "/api/v1/audiences", "", 200},
		{"viewer", viewer, vt, "GET", "/api/v1/campaigns/sec", "", 200},
		{"viewer", viewer, vt, "POST", "/api/v1/campaigns/sec/send", "", 403},
		{"viewer", viewer, vt, "POST", "/api/v1/audiences", `{"name":"v"}`, 403},
		{"viewer", viewer, vt, "DELETE", "/api/v1/audiences/1", "", 403},
		{"viewer", viewer, vt, "GET", "/api/v1/users", "", 403},
		{"viewer", viewer, vt, "GET", "/api/v1/queue/stats", "", 403},
		{"marketer", marketer, mt, "POST", "/api/v1/audiences", `{"name":"m"}`, 201},
		{"marketer", marketer, mt, "GET", "/api/v1/users", "", 403},
		{"marketer", marketer, mt, "POST", "/api/v1/keys", `{"name":"k","role":"owner"}`, 403},
		{"marketer", marketer, mt, "POST", "/api/v1/queue/flush", `{}`, 403},
		{"marketer", marketer, mt, "GET", "/api/v1/suppressions", "", 200},
		{"marketer", marketer, mt, "POST", "/api/v1/suppressions", `{"address":"x@example.test"}`, 403},
		{"owner", owner, tok, "GET", "/api/v1/users", "", 200},
	} {
		if code, ec := call(t, e, tt.c, tt.method, tt.path, tt.csrf, tt.body); code != tt.code {
			t.Errorf("%s %s %s = %d %s, want %d", tt.who, tt.method, tt.path, code, ec, tt.code)
		}
	}
	var c struct{ Status string }
	if e.api("GET", "/api/v1/campaigns/sec", nil, &c); c.Status != "draft" {
		t.Errorf("the viewer's refused send changed the campaign: %q", c.Status)
	}

	// A database key with the viewer role reads but cannot write.
	var k struct{ Secret string }
	if code, err := e.api("POST", "/api/v1/keys", map[string]any{"name": "ro", "role": "viewer", "stream": "marketing"}, &k); err != nil || code != 201 || !strings.HasPrefix(k.Secret, "ptk_") {
		t.Fatalf("create key: %d %v %+v", code, err, k)
	}
	for _, tt := range []struct {
		method, path string
		code         int
	}{{"GET", "/api/v1/audiences", 200}, {"POST", "/api/v1/campaigns/sec/send", 403}} {
		req, _ := http.NewRequest(tt.method, "http://"+e.http+tt.path, nil)
		req.Header.Set("Authorization", "Bearer "+k.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("viewer key %s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
	}

	// Session fixation.
	jar, _ := cookiejar.New(nil)
	base, _ := url.Parse("http://" + e.http + "/")
	const planted = "attacker-chosen-session-id-0000000000000000"
	jar.SetCookies(base, []*http.Cookie{{Name: "petrel_session", Value: planted, Path: "/"}})
	fixed := &http.Client{Jar: jar}
	if code, _ := call(t, e, fixed, "GET", "/api/v1/session", "", ""); code != 401 {
		t.Errorf("planted session before login: %d, want 401", code)
	}
	resp, err = fixed.Post("http://"+e.http+"/ui/login", "application/json", strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, uiOwner, uiPassword)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var issued string
	for _, ck := range jar.Cookies(base) {
		if ck.Name == "petrel_session" {
			issued = ck.Value
		}
	}
	if issued == "" || issued == planted {
		t.Fatalf("login kept the planted session id (%q)", issued)
	}
	attacker := &http.Client{Jar: mustJar(base, planted)}
	if code, _ := call(t, e, attacker, "GET", "/api/v1/session", "", ""); code != 401 {
		t.Errorf("the planted id authenticates after the victim's login: %d", code)
	}
	// Logging in again rotates: the previous id stops working.
	resp, err = fixed.Post("http://"+e.http+"/ui/login", "application/json", strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, uiOwner, uiPassword)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, _ := call(t, e, &http.Client{Jar: mustJar(base, issued)}, "GET", "/api/v1/session", "", ""); code != 401 {
		t.Errorf("the session before a re-login still works: %d", code)
	}
	// Logout ends the session.
	if code, _ := call(t, e, owner, "DELETE", "/api/v1/session", tok, ""); code != 200 {
		t.Errorf("logout: %d", code)
	}
	if code, _ := call(t, e, owner, "GET", "/api/v1/audiences", "", ""); code != 401 {
		t.Errorf("after logout: %d, want 401", code)
	}

	// Login rate limit.
	for i := 0; i < 5; i++ {
		if code, _ := call(t, e, http.DefaultClient, "POST", "/ui/login", "", `{"email":"marketer@shop.test","password":"wrong password"}`); code != 401 {
			t.Errorf("wrong password %d: %d, want 401", i, code)
		}
	}
	if code, ec := call(t, e, http.DefaultClient, "POST", "/ui/login", "", fmt.Sprintf(`{"email":"marketer@shop.test","password":%q}`, uiPassword)); code != 429 || ec != "rate_limited" {
		t.Errorf("after 5 failures the right password: %d %s, want 429", code, ec)
	}
}

func mustJar(base *url.URL, session string) *cookiejar.Jar {
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(base, []*http.Cookie{{Name: "petrel_session", Value: session, Path: "/"}})
	return jar
}

// xss is a payload that runs script if it ever reaches innerHTML.
const xss = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><svg onload="window.__xss=3">`

// TestDashboardEscapesUserData puts script payloads in an audience
// name, a custom field value, contact names and tags (by the API and in
// CSV values), a segment name, a template's name and subject and a
// campaign subject, then renders every page in Chromium: no payload
// runs, no element from it exists, and its text shows literally.
func TestDashboardEscapesUserData(t *testing.T) {
	e := uiDaemon(t, nil)
	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "A " + xss, "fields": []map[string]any{{"name": "note", "type": "text"}}}, &a); err != nil || code != 201 {
		t.Fatalf("audience: %d %v", code, err)
	}
	aid := fmt.Sprint(a.ID)
	if code, err := e.api("POST", "/api/v1/audiences/"+aid+"/contacts", map[string]any{"email": "x@example.test", "name": xss, "tags": []string{"t" + xss}, "fields": map[string]any{"note": xss}}, nil); err != nil || code/100 != 2 {
		t.Fatalf("contact: %d %v", code, err)
	}
	csv := "email,name,note\n" + `y@example.test,"` + strings.ReplaceAll(xss, `"`, `""`) + `","` + strings.ReplaceAll(xss, `"`, `""`) + "\"\n"
	req, _ := http.NewRequest("POST", "http://"+e.http+"/api/v1/audiences/"+aid+"/imports", strings.NewReader(csv))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var imp struct{ ID int64 }
	json.NewDecoder(resp.Body).Decode(&imp)
	resp.Body.Close()
	waitFor(t, 20*time.Second, "the CSV import", func() bool {
		var st struct{ State string }
		e.api("GET", fmt.Sprintf("/api/v1/imports/%d", imp.ID), nil, &st)
		return st.State == "done"
	})
	if code, err := e.api("POST", "/api/v1/audiences/"+aid+"/segments", map[string]any{"name": "S " + xss, "expression": `name != ""`}, nil); err != nil || code != 201 {
		t.Fatalf("segment: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/templates", map[string]any{"call_name": "x", "name": "T " + xss, "type": "marketing", "subject": "Sub " + xss, "html": "<p>" + xss + "</p>", "text": "x"}, nil); err != nil || code != 201 {
		t.Fatalf("template: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/campaigns", map[string]any{"id": "xss", "audience": a.ID, "from": "news@shop.test", "subject": "C " + xss, "text": "t", "postal_address": "P " + xss}, nil); err != nil || code != 201 {
		t.Fatalf("campaign: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/suppressions", map[string]any{"address": "z@example.test", "stream": "marketing", "reason": "manual", "source": "S" + xss}, nil); err != nil || code/100 != 2 {
		t.Logf("suppression with a payload source: %d %v", code, err)
	}
	// A key name with markup, shown on the tracking settings page.
	if code, err := e.api("POST", "/api/v1/keys", map[string]any{"name": `K <img src=x onerror="window.__xss=1">`, "role": "viewer"}, nil); err != nil || code != 201 {
		t.Fatalf("key: %d %v", code, err)
	}
	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http, shot: filepath.Join(artifacts(t), "xss")}
	os.MkdirAll(u.shot, 0o755)
	u.login(uiOwner, uiPassword)
	for _, p := range []struct{ hash, mustShow string }{
		{"#/audiences", "A <img"},
		{"#/audiences/" + aid, "<script>window.__xss=2</script>"},
		{"#/audiences/" + aid + "/segments", "S <img"},
		{"#/audiences/" + aid + "/fields", ""},
		{"#/audiences/" + aid + "/import", ""},
		{"#/templates", "T <img"},
		{"#/templates/edit/x", ""},
		{"#/campaigns/xss", "C <img"},
		{"#/campaigns/new", ""},
		{"#/stats/xss", ""},
		{"#/operations", ""},
		{"#/users", ""},
		{"#/domains", ""},
		{"#/campaigns", "C <img"},
		{"#/automation", ""},
		{"#/tracking", "K <img"},
	} {
		u.page(p.hash)
		time.Sleep(300 * time.Millisecond) // let every request of the page land
		var ran any
		var injected int
		var text string
		u.run("check "+p.hash, chromedp.Evaluate(`window.__xss ?? null`, &ran),
			chromedp.Evaluate(`document.querySelectorAll('main img[src="x"], main script, main svg[onload], main [onerror]').length`, &injected),
			chromedp.Evaluate(`document.querySelector("main").textContent`, &text))
		if ran != nil || injected != 0 {
			t.Errorf("%s: payload ran (%v) or made %d elements", p.hash, ran, injected)
		}
		if p.mustShow != "" && !strings.Contains(text, p.mustShow) {
			t.Errorf("%s: text %q does not show the payload literally (%q)", p.hash, text, p.mustShow)
		}
		u.screenshot(strings.NewReplacer("#/", "", "/", "-").Replace(p.hash))
	}
	// The template preview renders the HTML in a sandboxed frame: scripts
	// there cannot run nor reach the page.
	var sandbox string
	var has bool
	u.page("#/templates/edit/x")
	u.run("sandbox", chromedp.AttributeValue(`#tpl-preview`, "sandbox", &sandbox, &has, chromedp.ByID))
	if !has || sandbox != "" {
		t.Errorf("preview frame sandbox=%q, want empty (everything forbidden)", sandbox)
	}
	ctx, cancel := context.WithTimeout(u.ctx, 2*time.Second)
	defer cancel()
	var ran any
	chromedp.Run(ctx, chromedp.Evaluate(`window.__xss ?? null`, &ran))
	if ran != nil {
		t.Errorf("the template preview ran the payload: %v", ran)
	}
}
