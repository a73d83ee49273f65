package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardLoadTimes measures full page loads (navigation to the
// page rendered with its data: HTML, modules, session and API calls) in
// Chromium against petreld holding a large audience and 100 campaigns.
// PETREL_UI_LOAD_CONTACTS sets the audience size (default 20,000, so CI
// stays quick; the README's figures are from 1,000,000). Each page must
// load within PETREL_UI_LOAD_BUDGET (default 3s on a shared CI machine;
// the target is 300 ms).
func TestDashboardLoadTimes(t *testing.T) {
	n := 20000
	if v := os.Getenv("PETREL_UI_LOAD_CONTACTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	budget := 3 * time.Second
	if v := os.Getenv("PETREL_UI_LOAD_BUDGET"); v != "" {
		var err error
		if budget, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	e := uiDaemon(t, nil)
	aid := importBigAudience(t, e, n)
	aidN, _ := strconv.ParseInt(aid, 10, 64)
	if code, err := e.api("POST", "/api/v1/audiences/"+aid+"/segments", map[string]any{"name": "Taipei", "expression": `city == "Taipei"`}, nil); err != nil || code != 201 {
		t.Fatalf("segment: %d %v", code, err)
	}
	for i := 0; i < 100; i++ {
		spec := map[string]any{"id": fmt.Sprintf("c%03d", i), "audience": aidN, "from": "news@shop.test", "subject": fmt.Sprintf("Issue %d", i),
			"text": "Hello %name%", "postal_address": "Shop Ltd, 1 Road"}
		if code, err := e.api("POST", "/api/v1/campaigns", spec, nil); err != nil || code != 201 {
			t.Fatalf("campaign %d: %d %v", i, code, err)
		}
	}
	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http}
	u.login(uiOwner, uiPassword)
	pages := []struct{ name, hash string }{
		{"home", "#/"}, {"domains", "#/domains"}, {"audiences", "#/audiences"}, {"contacts", "#/audiences/" + aid},
		{"segments (with counts)", "#/audiences/" + aid + "/segments"}, {"import", "#/audiences/" + aid + "/import"},
		{"templates", "#/templates"}, {"campaigns (100)", "#/campaigns"}, {"campaign", "#/campaigns/c050"},
		{"new campaign", "#/campaigns/new"}, {"stats", "#/stats/c050"}, {"stats overview", "#/stats"},
		{"automation", "#/automation"}, {"operations", "#/operations"}, {"users", "#/users"},
	}
	var lines []string
	for _, p := range pages {
		var best float64 = -1
		for try := 0; try < 3; try++ { // best of 3: the machine is shared
			var ms float64
			u.run("load "+p.name, chromedp.Navigate("about:blank"), chromedp.Navigate(u.base+"/ui/"+p.hash), chromedp.WaitVisible(`main > div[data-ready]`, chromedp.ByQuery),
				chromedp.Evaluate(`window.petrelReadyAt`, &ms))
			if p.name == "segments (with counts)" {
				// The counts fill in after the page; wait for them too.
				start := time.Now()
				u.waitText(time.Minute, `#page-audiences table tbody td.num`, func(s string) bool { return s != "…" && s != "" })
				ms += float64(time.Since(start).Milliseconds())
			}
			if best < 0 || ms < best {
				best = ms
			}
		}
		d := time.Duration(best * float64(time.Millisecond))
		lines = append(lines, fmt.Sprintf("%-24s %6d ms", p.name, d.Milliseconds()))
		if d > budget {
			t.Errorf("%s loads in %s, over %s", p.name, d, budget)
		}
	}
	// Contact search, timed apart: a whole address (indexed lookup) and
	// a part of one (a scan of every contact, evaluated in Go).
	for _, q := range []struct{ name, term string }{{"search: whole address", fmt.Sprintf("c%d@example.test", n-1)}, {"search: substring (scan)", fmt.Sprintf("c%d@", n-1)}} {
		u.run("contacts page", chromedp.Navigate("about:blank"), chromedp.Navigate(u.base+"/ui/#/audiences/"+aid), chromedp.WaitVisible(`#contacts tbody tr`, chromedp.ByQuery))
		u.run("type", chromedp.SetValue(`#contact-search`, q.term, chromedp.ByID))
		s0 := time.Now()
		u.run("search", chromedp.Evaluate(`document.querySelector("#contact-search").dispatchEvent(new Event("input"))`, nil))
		u.waitText(10*time.Minute, `#contacts tbody`, func(s string) bool {
			return strings.Contains(s, fmt.Sprintf("c%d@example.test", n-1)) && !strings.Contains(s, "c1@example.test")
		})
		lines = append(lines, fmt.Sprintf("%-24s %6d ms (incl. 300 ms debounce)", q.name, time.Since(s0).Milliseconds()))
	}
	sort.Strings(lines)
	t.Logf("page load times, %d contacts, 100 campaigns (best of 3, navigation to rendered):\n%s", n, strings.Join(lines, "\n"))
}
