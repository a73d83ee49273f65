package main

// Operations page in a real Chromium against a real petreld: the
// suppression list's import (file and paste, with its row errors) and
// export (all streams and one).

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

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
	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http}
	u.login(uiOwner, uiPassword)
	u.page("#/operations")
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
