package main

// Operations page in a real Chromium against a real petreld: the
// suppression list's import (file and paste, with its row errors) and
// export (all streams and one).

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/petrel-mta/petrel/internal/testnet"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// open shows the hash route and waits until the page named id (the
// route's first part) has rendered: page() returns as soon as any page
// is ready, which may still be the one before.
func (u *ui) open(hash, id string) {
	u.t.Helper()
	u.run("open "+hash, chromedp.Evaluate(fmt.Sprintf(`location.hash = %q`, hash), nil),
		chromedp.WaitVisible(`#page-`+id+`[data-ready]`, chromedp.ByQuery))
}

// fetchText fetches path in the page (with its session cookie) and
// returns the body.
func (u *ui) fetchText(path string) string {
	u.t.Helper()
	var s string
	u.run("fetch "+path, chromedp.Evaluate(`fetch(`+jsString(path)+`, {credentials: "same-origin"}).then(r => r.text())`, &s,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	return s
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// TestDashboardSuppressionImport: an owner imports suppressions on the
// Operations page from a CSV file and from pasted rows; the page reports
// imported and skipped counts and each invalid row's line and error, the
// list shows the new entries, the API finds them suppressed in the right
// stream, and the export link downloads them (all streams, or the stream
// chosen in the filter). Every control is labelled.
func TestDashboardSuppressionImport(t *testing.T) {
	e := uiDaemon(t, nil)
	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http, shot: artifacts(t)}
	u.login(uiOwner, uiPassword)
	u.open("#/operations", "operations")
	if s := u.text(`#ops-supp`); strings.Contains(s, "null") {
		t.Errorf("the suppression list shows %q", s)
	}
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("unlabelled controls on the operations page: %v", bad)
	}

	// A file: a header, three good rows, two bad ones.
	csvPath := filepath.Join(t.TempDir(), "supp.csv")
	if err := os.WriteFile(csvPath, []byte("address,stream,reason\nfile1@example.test,marketing,unsubscribe\nnot-an-address,marketing\nfile2@example.test,*,complaint\nfile3@example.test,marketing,no_such_reason\nfile4@example.test,transactional,hard_bounce\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.run("upload", chromedp.SetUploadFiles(`#supp-import-file`, []string{csvPath}, chromedp.ByID),
		chromedp.Click(`#supp-import-submit`, chromedp.ByID))
	res := u.waitText(30*time.Second, `#supp-import-result`, func(s string) bool { return strings.Contains(s, "Imported") })
	if !strings.Contains(res, "Imported 3, skipped 2.") {
		t.Errorf("file import result %q", res)
	}
	errs := u.text(`#supp-import-errors`)
	for _, want := range []string{"3", "not-an-address", "5", "no_such_reason"} {
		if !strings.Contains(errs, want) {
			t.Errorf("row errors %q lack %q", errs, want)
		}
	}
	u.waitText(10*time.Second, `#ops-supp table tbody`, func(s string) bool { return strings.Contains(s, "file1@example.test") })
	for _, c := range []struct {
		stream, addr string
		want         int
	}{{"marketing", "file1@example.test", 200}, {"*", "file2@example.test", 200}, {"transactional", "file4@example.test", 200},
		{"marketing", "file3@example.test", 404}, {"marketing", "file4@example.test", 404}} {
		if code, _ := e.api("GET", "/api/v1/suppressions/"+c.stream+"/"+c.addr, nil, nil); code != c.want {
			t.Errorf("%s in %s: %d, want %d", c.addr, c.stream, code, c.want)
		}
	}

	// Pasted rows, with a source; a clean paste reports no errors. (The
	// form was reset: the file is not sent again.)
	u.run("paste", chromedp.SetValue(`#supp-import-paste`, "paste1@example.test,marketing,manual\npaste2@example.test\n", chromedp.ByID),
		chromedp.SetValue(`#supp-import-source`, "crm-export", chromedp.ByID), chromedp.Click(`#supp-import-submit`, chromedp.ByID))
	if res := u.waitText(30*time.Second, `#supp-import-result`, func(s string) bool { return strings.Contains(s, "Imported") }); !strings.Contains(res, "Imported 2, skipped 0.") {
		t.Errorf("paste import result %q", res)
	}
	var ent struct{ Source, Stream string }
	if code, _ := e.api("GET", "/api/v1/suppressions/marketing/paste1@example.test", nil, &ent); code != 200 || ent.Source != "crm-export" {
		t.Errorf("pasted row: %d %+v", code, ent)
	}
	// Nothing chosen: the form says so and sends nothing.
	u.run("empty import", chromedp.Click(`#supp-import-submit`, chromedp.ByID))
	u.waitText(10*time.Second, `#supp-import-result`, func(s string) bool { return strings.Contains(s, "Choose a file") })

	// Export: every stream, then the marketing stream only (the link
	// follows the stream filter).
	all := u.fetchText(u.attr(`#supp-export`, "href"))
	for _, a := range []string{"file1@example.test", "file2@example.test", "file4@example.test", "paste1@example.test", "paste2@example.test"} {
		if !strings.Contains(all, a) {
			t.Errorf("export lacks %s:\n%s", a, all)
		}
	}
	u.run("filter marketing", chromedp.SetValue(`#supp-stream`, "marketing", chromedp.ByID),
		chromedp.Evaluate(`document.querySelector("#supp-stream").dispatchEvent(new Event("change"))`, nil))
	href := u.attr(`#supp-export`, "href")
	if !strings.Contains(href, "stream=marketing") {
		t.Fatalf("export link %q does not follow the stream filter", href)
	}
	mk := u.fetchText(href)
	if !strings.HasPrefix(mk, "address,stream,reason,source,time") || !strings.Contains(mk, "file1@example.test,marketing,unsubscribe") || strings.Contains(mk, "file4@example.test") {
		t.Errorf("marketing export:\n%s", mk)
	}
	u.screenshot("operations-suppression-import")
}

// attr returns attribute name of the first element matching sel.
func (u *ui) attr(sel, name string) string {
	u.t.Helper()
	var s string
	u.run("attribute "+name+" of "+sel, chromedp.Evaluate(`document.querySelector(`+jsString(sel)+`)?.getAttribute(`+jsString(name)+`) ?? ""`, &s))
	return s
}

// TestDashboardOperationsAndReputation audits the rest of the Operations
// and Stats pages against a real petreld in a real Chromium: a remote that
// answers "450 4.7.1 poor reputation" raises a shaping automation
// (suspend) that the page lists, with its destination still queued and
// paged; the configured webhook's deliveries show; a bulk verification
// of pasted addresses runs to done with its progress and result links;
// the stats overview lists the sending domain against the 0.3% complaint
// line and says whether blocklist monitoring runs; the keys page says
// what a key's stream and domains limit. Every control is labelled, and
// the new strings are in zh-Hant too.
func TestDashboardOperationsAndReputation(t *testing.T) {
	var hooks atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hooks.Add(1) }))
	t.Cleanup(hook.Close)
	e := uiDaemon(t, nil, func(e *env) {
		e.mx(3, "slow.test", testnet.MXScript{OnRcpt: func(string, int) error {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "poor reputation, try later"}
		}})
		e.extra += fmt.Sprintf(`
[[shaping.automation]]
regex = "poor reputation"
action = "suspend"
duration = "1h"

[[webhooks]]
name = "sink"
url = %q
secret = "hook-secret"
events = ["delivered"]
max_backoff = "1s"
`, hook.URL+"/hook")
	})
	for _, to := range []string{"bob@example.test", "x1@slow.test", "x2@slow.test"} {
		if code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "news@shop.test", "to": []string{to}, "subject": "hi", "text": "hello"}, nil); err != nil || code != 202 {
			t.Fatalf("send to %s: %d %v", to, code, err)
		}
	}
	testnet.Wait(30*time.Second, func() bool {
		var st struct{ Actions []struct{ Action string } }
		e.api("GET", "/api/v1/policy/status", nil, &st)
		return len(st.Actions) > 0 && hooks.Load() > 0
	})

	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http, shot: artifacts(t)}
	u.login(uiOwner, uiPassword)
	u.open("#/operations", "operations")
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("unlabelled controls on the operations page: %v", bad)
	}
	if s := u.text(`#ops-actions`); !strings.Contains(s, "suspend") || !strings.Contains(s, "slow.test") || !strings.Contains(s, "poor reputation") {
		t.Errorf("automation actions %q", s)
	}
	if s := u.text(`#ops-queue`); !strings.Contains(s, "slow.test") || !strings.Contains(s, "Page 1") {
		t.Errorf("queue %q", s)
	}
	if s := u.text(`#ops-webhook-table`); !strings.Contains(s, "sink") || !strings.Contains(s, "delivered") {
		t.Errorf("webhooks %q", s)
	}
	var delivered string
	u.run("webhook delivered count", chromedp.Evaluate(`document.querySelector("#ops-webhook-table tbody td:nth-child(4)").textContent`, &delivered))
	if delivered == "0" || delivered == "" {
		t.Errorf("webhook delivered count %q after %d deliveries", delivered, hooks.Load())
	}

	// Bulk verification with progress, to done.
	u.run("start a verification job", chromedp.SetValue(`#vjob-paste`, "c1@example.test\nc2@example.test\nnobody@no-such-domain.test\n", chromedp.ByID),
		chromedp.Click(`#vjob-submit`, chromedp.ByID))
	row := u.waitText(60*time.Second, `#vjob-table tbody`, func(s string) bool { return strings.Contains(s, "done") && strings.Contains(s, "3 / 3") })
	if !strings.Contains(row, "valid (CSV)") || !strings.Contains(row, "invalid (CSV)") {
		t.Errorf("job row %q", row)
	}
	var pct string
	u.run("progress", chromedp.Evaluate(`String(document.querySelector("#vjob-table progress").value)`, &pct))
	if pct != "100" {
		t.Errorf("finished job's progress bar at %s", pct)
	}
	res := u.fetchText(u.attr(`#vjob-table a[href*="bucket=invalid"]`, "href"))
	if !strings.Contains(res, "nobody@no-such-domain.test") || strings.Contains(res, "c1@example.test") {
		t.Errorf("invalid results:\n%s", res)
	}
	u.screenshot("operations-shaping-webhooks-verify")

	// Stats: the sending domain against the 0.3% line; blocklists.
	u.open("#/stats", "stats")
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("unlabelled controls on the stats page: %v", bad)
	}
	if s := u.waitText(20*time.Second, `#stats-reputation`, func(s string) bool {
		return strings.Contains(s, "Blocklist") && (strings.Contains(s, "checks") || strings.Contains(s, "off"))
	}); !strings.Contains(s, "shop.test") || !strings.Contains(s, "under") {
		t.Errorf("sending domain reputation %q", s)
	}
	u.screenshot("stats-reputation")
	for _, id := range []string{"stats-providers", "stats-types", "stats-seg"} {
		if u.attr("#"+id, "id") != id {
			t.Errorf("stats overview lacks #%s", id)
		}
	}
	u.run("segment stats", chromedp.SetValue(`#stats-seg-audience`, "1", chromedp.ByID), chromedp.Click(`#stats-seg button[type=submit]`, chromedp.ByQuery))
	u.waitText(10*time.Second, `#stats-seg-result`, func(s string) bool { return s != "" })

	// Keys page: a key with a stream of its own and a sending domain,
	// whose limits hold at ingest.
	u.open("#/users", "users")
	if s := u.text(`#keys-help`); !strings.Contains(s, "stream") || !strings.Contains(s, "sending domains") {
		t.Errorf("keys help %q", s)
	}
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("unlabelled controls on the users page: %v", bad)
	}
	var secret string
	u.run("create a key", chromedp.SendKeys(`#key-name`, "newsletter app", chromedp.ByID), chromedp.SetValue(`#key-stream`, "newsletter", chromedp.ByID),
		chromedp.SendKeys(`#key-domains`, "shop.test", chromedp.ByID), chromedp.Click(`#key-add button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#key-secret`, chromedp.ByID), chromedp.Text(`#key-secret`, &secret, chromedp.ByID))
	base := "http://" + e.http
	for _, c := range []struct {
		from string
		code int
	}{{"news@shop.test", 202}, {"news@other.test", 403}} {
		if code, out := post(t, base+"/api/v1/messages", secret, map[string]any{"from": c.from, "to": []string{"bob@example.test"}, "subject": "s", "text": "t"}); code != c.code || (code == 202 && out["stream"] != "newsletter") {
			t.Errorf("key from the page, from %s: %d %v, want %d", c.from, code, out, c.code)
		}
	}

	// zh-Hant: the new sections are translated.
	u.run("switch language", chromedp.SetValue(`#lang`, "zh-Hant", chromedp.ByID),
		chromedp.Evaluate(`document.querySelector("#lang").dispatchEvent(new Event("change"))`, nil))
	u.open("#/", "home")
	u.open("#/operations", "operations")
	if s := u.text(`#page-operations`); !strings.Contains(s, "流量調節與自動化") || !strings.Contains(s, "批次驗證") || !strings.Contains(s, "匯入抑制名單") {
		t.Errorf("zh-Hant operations page %q", s)
	}
	u.run("back to English", chromedp.Evaluate(`localStorage.removeItem("petrel.lang")`, nil))
}
