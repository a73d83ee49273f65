package dist

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// exportedMetrics runs petreld through delivered, deferred and bounced
// recipients (to a real loopback MX) in two streams, a bounce alarm that
// pauses the marketing stream, and a webhook that fails once, and
// returns the metric families its /metrics then exports.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	// A webhook receiver that fails its first POST, then accepts.
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if posts.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	// Alarms on the first bounces, pausing the marketing stream.
	dm := startDaemon(t, fmt.Sprintf(`
[bounce]
bounce_rate_alarm = 0.1
alarm_min_sample = 1
pause_marketing_on_alarm = true

[[webhooks]]
name = "hook"
url = %q
max_backoff = "1s"
secret = "hook-secret"
`, hook.URL))
	dm.mx(t, 1, "dest.test").SetScript(testnet.MXScript{OnRcpt: func(to string, _ int) error {
		switch {
		case strings.HasPrefix(to, "later@"):
			return testnet.Reply(450, "4.2.0", "try later")
		case strings.HasPrefix(to, "nobody"):
			return testnet.Reply(550, "5.1.1", "no such user")
		}
		return nil
	}})
	for _, stream := range []string{"transactional", "marketing"} {
		msg := "From: a@sender.test\r\nTo: ok@dest.test\r\nX-Petrel-Stream: " + stream + "\r\nSubject: m\r\n\r\nhi\r\n"
		// A bounced address of its own per message: the first one's hard
		// bounce may suppress it before the second is submitted.
		if err := smtp.SendMail(dm.smtp, nil, "a@sender.test", []string{"ok@dest.test", "later@dest.test", "nobody-" + stream + "@dest.test"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	var text string
	if !testnet.Wait(20*time.Second, func() bool {
		text = dm.metrics(t)
		for _, want := range []string{`outcome="delivered"`, `outcome="deferred"`, `outcome="bounced"`,
			"petrel_webhook_deliveries_total{", "petrel_webhook_failures_total{", "petrel_stream_alarm{", "petrel_stream_paused{"} {
			if !strings.Contains(text, want) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("metrics never showed delivered, deferred and bounced:\n%s", text)
	}
	if os.Getenv("PRINT_METRICS") != "" {
		t.Log(text)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "# TYPE ") {
			got[strings.Fields(l)[2]] = true
		}
	}
	return got
}

var metricName = regexp.MustCompile(`\b(petrel_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

// referenced returns the metric names an expression text uses, with
// histogram suffixes mapped to their family.
func referenced(text string) []string {
	seen := map[string]bool{}
	for _, m := range metricName.FindAllString(text, -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suf) {
				m = strings.TrimSuffix(m, suf)
			}
		}
		seen[m] = true
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// TestMonitoringFiles: promtool accepts dist/prometheus-alerts.yml and
// its unit tests (dist/prometheus-alerts_test.yml), the dashboard is
// valid Grafana JSON, and every metric either references is exported by
// a running petreld.
func TestMonitoringFiles(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	if out, err := exec.Command("promtool", "check", "rules", "prometheus-alerts.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := exec.Command("promtool", "test", "rules", "prometheus-alerts_test.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	alerts, err := os.ReadFile("prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dash, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	if d.Title == "" || d.UID == "" || len(exprs) < 8 {
		t.Fatalf("dashboard: title %q uid %q, %d queries", d.Title, d.UID, len(exprs))
	}
	// Every dashboard query must parse as PromQL: promtool checks it as
	// a recording rule.
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	for i, e := range exprs {
		fmt.Fprintf(&rules, "  - record: dashboard:q%d\n    expr: %q\n", i, strings.ReplaceAll(strings.ReplaceAll(e, "$__rate_interval", "5m"), "$instance", ".*"))
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	os.WriteFile(tmp, []byte(rules.String()), 0o644)
	if out, err := exec.Command("promtool", "check", "rules", tmp).CombinedOutput(); err != nil {
		t.Fatalf("dashboard queries are not valid PromQL: %v\n%s", err, out)
	}

	exported := exportedMetrics(t)
	var missing []error
	for file, text := range map[string]string{"prometheus-alerts.yml": string(alerts), "grafana-dashboard.json": strings.Join(exprs, "\n")} {
		refs := referenced(text)
		if len(refs) == 0 {
			t.Errorf("%s references no metric", file)
		}
		for _, m := range refs {
			if !exported[m] {
				missing = append(missing, fmt.Errorf("%s: %s", file, m))
			}
		}
	}
	if len(missing) > 0 {
		var names []string
		for m := range exported {
			names = append(names, m)
		}
		sort.Strings(names)
		t.Fatalf("referenced but not exported by petreld: %v\nexported: %s", errors.Join(missing...), strings.Join(names, " "))
	}
}
