package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/petrel-mta/petrel/tracking"
)

// TestDashboardTrackingSettings: in a real Chromium against a real
// petreld, the Settings → Tracking page lists the sending domains and
// API keys with labelled switches; turning a key's opens off and a
// domain's clicks off in the browser is what the API then answers (and
// what a message from that domain gets); a custom tracking domain added
// in the page shows its CNAME record and, after Check now, its failed
// CNAME; the page fits a phone and is translated to zh-Hant.
func TestDashboardTrackingSettings(t *testing.T) {
	e := uiDaemon(t, nil)
	if code, err := e.api("POST", "/api/v1/domains", map[string]any{"domain": "shop.test"}, nil); err != nil || code != 201 {
		t.Fatalf("add sending domain: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/keys", map[string]any{"name": "resets", "role": "owner"}, nil); err != nil || code != 201 {
		t.Fatalf("create key: %d %v", code, err)
	}
	u := &ui{t: t, ctx: browser(t, "en-US,en"), base: "http://" + e.http, shot: artifacts(t)}
	u.login(uiOwner, uiPassword)
	u.run("nav entry", chromedp.WaitVisible(`nav a[href="#/tracking"]`, chromedp.ByQuery))
	u.page("#/tracking")
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("controls without a label: %v", bad)
	}
	sel := func(scope, name, sw string) string {
		return fmt.Sprintf(`select[data-scope=%q][data-name=%q][data-switch=%q]`, scope, name, sw)
	}
	change := func(css, value string) {
		t.Helper()
		u.run("set "+css, chromedp.SetValue(css, value, chromedp.ByQuery),
			chromedp.Evaluate(fmt.Sprintf(`document.querySelector(%q).dispatchEvent(new Event("change"))`, css), nil))
	}
	change(sel("key", "resets", "opens"), "off")
	u.waitText(10*time.Second, `#trk-status`, func(s string) bool { return strings.Contains(s, "Saved for resets") })
	var st tracking.ScopeSetting
	if code, err := e.api("GET", "/api/v1/tracking/settings/key/resets", nil, &st); err != nil || code != 200 ||
		st.Opens == nil || *st.Opens || st.Clicks != nil || st.Unsubscribe != nil {
		t.Fatalf("key resets after the browser's change: %d %v %+v", code, err, st)
	}
	change(sel("domain", "shop.test", "clicks"), "off")
	u.waitText(10*time.Second, `#trk-status`, func(s string) bool { return strings.Contains(s, "Saved for shop.test") })
	var eff tracking.Effective
	if code, err := e.api("GET", "/api/v1/tracking/settings/effective?key=resets&domain=shop.test", nil, &eff); err != nil || code != 200 ||
		eff.Opens || eff.Clicks {
		t.Fatalf("effective after the browser's changes: %d %v %+v", code, err, eff)
	}
	// Back to inherit: the row disappears from the API.
	change(sel("key", "resets", "opens"), "inherit")
	u.waitText(10*time.Second, `#trk-status`, func(s string) bool { return strings.Contains(s, "Saved for resets") })
	if e.api("GET", "/api/v1/tracking/settings/key/resets", nil, &st); st.Opens != nil {
		t.Fatalf("opens still set after inherit: %+v", st)
	}

	// A tracking domain: its CNAME record, then a check (no such name in
	// the test DNS: failed, with the record to add).
	u.run("add tracking domain", chromedp.SendKeys(`#trk-host`, "track.shop.test", chromedp.ByID),
		chromedp.SendKeys(`#trk-host-sending`, "shop.test", chromedp.ByID), chromedp.Click(`#trk-host-add button[type=submit]`, chromedp.ByQuery))
	u.waitText(10*time.Second, `#trk-hosts-table`, func(s string) bool { return strings.Contains(s, "track.shop.test. CNAME petrel.test.") })
	u.run("check now", chromedp.Click(`tr[data-host="track.shop.test"] button`, chromedp.ByQuery))
	u.waitText(10*time.Second, `tr[data-host="track.shop.test"]`, func(s string) bool { return strings.Contains(s, "failed") })
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("controls without a label: %v", bad)
	}
	u.screenshot("tracking-settings")
	u.fitsPhone("tracking-settings")

	// After a reload the page shows the stored switch.
	u.page("#/")
	u.page("#/tracking")
	var v string
	u.run("stored value", chromedp.Value(sel("domain", "shop.test", "clicks"), &v, chromedp.ByQuery))
	if v != "off" {
		t.Fatalf("domain clicks select after reload = %q, want off", v)
	}
	u.run("switch language", chromedp.SetValue(`#lang`, "zh-Hant", chromedp.ByID),
		chromedp.Evaluate(`document.querySelector("#lang").dispatchEvent(new Event("change"))`, nil))
	u.waitText(10*time.Second, `main h1`, func(s string) bool { return s == "追蹤設定" })
	if s := u.text(`nav`); !strings.Contains(s, "追蹤") {
		t.Errorf("zh-Hant nav %q", s)
	}
	if bad := u.unlabelled(); len(bad) > 0 {
		t.Errorf("zh-Hant: controls without a label: %v", bad)
	}
	u.run("back to English", chromedp.Evaluate(`localStorage.removeItem("petrel.lang")`, nil))
}
