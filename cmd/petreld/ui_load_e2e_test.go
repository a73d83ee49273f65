package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestDashboardLoadTimes measures full page loads (navigation to the
// page rendered with its data: HTML, modules, session and API calls) in
// Chromium against petreld holding a large audience and 100 campaigns.
// PETREL_UI_LOAD_CONTACTS sets the audience size (default 20,000, so CI
// stays quick; the README's figures are from 1,000,000). Each page must
// load within PETREL_UI_LOAD_BUDGET (default 3s on a shared CI machine;
// the target is 300 ms). The Operations page has as much to show: as many
// suppressions as contacts, and 5,000 recipients deferred by a remote
// answering 450 (so also a shaping action in force); its API calls are
// timed apart (the browser's resource timing).
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
	e := uiDaemon(t, nil, func(e *env) {
		e.mx(3, "slow.test", testnet.MXScript{OnRcpt: func(string, int) error {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "poor reputation, try later"}
		}})
		e.retry = `["1h"]` // deferred once, then quiet: no retry work under the page loads
		e.extra += "\n[[shaping.automation]]\nregex = \"poor reputation\"\naction = \"suspend\"\nduration = \"1h\"\n"
	})
	aid := importBigAudience(t, e, n)
	aidN, _ := strconv.ParseInt(aid, 10, 64)
	// Suppressions, as many as contacts, through the CSV import.
	start := time.Now()
	if code := postCSV(t, e, "/api/v1/suppressions/import", func(w io.Writer) {
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "s%d@example.test,%s,manual\n", i, []string{"*", "marketing"}[i%2])
		}
	}); code != 200 {
		t.Fatalf("suppression import: %d", code)
	}
	t.Logf("imported %d suppressions in %s", n, time.Since(start).Round(time.Second))
	// 5,000 recipients deferred at slow.test.
	for m := 0; m < 5; m++ {
		var to []string
		for i := 0; i < 1000; i++ {
			to = append(to, fmt.Sprintf("q%d-%d@slow.test", m, i))
		}
		if code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "news@shop.test", "to": to, "subject": "queued", "text": "hi"}, nil); err != nil || code != 202 {
			t.Fatalf("queue message %d: %d %v", m, code, err)
		}
	}
	if code, err := e.api("POST", "/api/v1/audiences/"+aid+"/segments", map[string]any{"name": "Taipei", "expression": `city == "Taipei"`}, nil); err != nil || code != 201 {
		t.Fatalf("segment: %d %v", code, err)
	}
	for i := 0; i < 100; i++ {
		spec := map[string]any{"id": fmt.Sprintf("c%03d", i), "audience": aidN, "from": "news@shop.test", "subject": fmt.Sprintf("Issue %d", i),
			"text": "Hello %name%", "postal_address": "Shop Ltd, 1 Road"}
		var out map[string]any
		if code, err := e.api("POST", "/api/v1/campaigns", spec, &out); err != nil || code != 201 {
			t.Fatalf("campaign %d: %d %v %v", i, code, out, err)
		}
	}
	u := &ui{t: t, ctx: browser(t, "en"), base: "http://" + e.http, shot: artifacts(t)}
	u.login(uiOwner, uiPassword)
	pages := []struct{ name, hash string }{
		{"home", "#/"}, {"domains", "#/domains"}, {"audiences", "#/audiences"}, {"contacts", "#/audiences/" + aid},
		{"segments (with counts)", "#/audiences/" + aid + "/segments"}, {"import", "#/audiences/" + aid + "/import"},
		{"templates", "#/templates"}, {"campaigns (100)", "#/campaigns"}, {"campaign", "#/campaigns/c050"},
		{"new campaign", "#/campaigns/new"}, {"stats", "#/stats/c050"}, {"stats overview", "#/stats"},
		{"automation", "#/automation"}, {"operations", "#/operations"}, {"users", "#/users"},
	}
	// Let petreld settle (compactions and followers after the imports)
	// before its CPU is counted: 1 s samples until one uses under 30 ms,
	// for at most 2 minutes. What it still uses idle is reported.
	var idleRate float64
	for settle := time.Now(); ; {
		c0, w0 := procCPU(t, e.cmd.Process.Pid), time.Now()
		time.Sleep(time.Second)
		idleRate = float64(procCPU(t, e.cmd.Process.Pid)-c0) / float64(time.Since(w0))
		if idleRate < 0.03 || time.Since(settle) > 2*time.Minute {
			break
		}
	}
	var lines []string
	for _, p := range pages {
		var best float64 = -1
		cpu0 := procCPU(t, e.cmd.Process.Pid)
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
		cpu := (procCPU(t, e.cmd.Process.Pid) - cpu0) / 3
		lines = append(lines, fmt.Sprintf("%-24s %6d ms  (petreld CPU %4d ms per load)", p.name, d.Milliseconds(), cpu.Milliseconds()))
		if d > budget {
			t.Errorf("%s loads in %s, over %s", p.name, d, budget)
		}
	}
	// The Operations page's API calls, each timed by the browser.
	var calls []struct {
		Name     string
		Duration float64
	}
	u.run("operations API timings", chromedp.Navigate("about:blank"), chromedp.Navigate(u.base+"/ui/#/operations"),
		chromedp.WaitVisible(`#page-operations[data-ready]`, chromedp.ByQuery),
		chromedp.Evaluate(`performance.getEntriesByType("resource").filter(e => e.name.includes("/api/")).map(e => ({name: new URL(e.name).pathname + new URL(e.name).search, duration: e.duration}))`, &calls))
	for _, c := range calls {
		lines = append(lines, fmt.Sprintf("  operations API %-40s %6.0f ms", c.Name, c.Duration))
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
	lines = append(lines, fmt.Sprintf("  (petreld CPU when idle before the loads: %.0f ms/s, included in the figures)", idleRate*1000))
	sort.Strings(lines)
	t.Logf("page load times, %d contacts, 100 campaigns (best of 3, navigation to rendered):\n%s", n, strings.Join(lines, "\n"))
}

// procCPU is the user+system CPU time process pid has used (Linux
// /proc/PID/stat, clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("petreld CPU time: %v", err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("petreld CPU time: short stat %q", b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("petreld CPU time: stat %q", b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// postCSV streams the CSV write produces to path with the daemon's key
// and returns the status.
func postCSV(t *testing.T, e *env, path string, write func(io.Writer)) int {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		write(pw)
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+e.http+path, pr)
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
