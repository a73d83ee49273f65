package main

import (
	"fmt"
	"net/smtp"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestEgressIPReputationE2E: the Stats page's reputation per IP (issue
// 15: "reputation per domain and IP against the 0.3% complaint line").
// petreld's transactional pool binds to 127.0.0.1 and marketing's to
// 127.0.0.2; real deliveries over loopback from both, one marketing
// message refused by its MX (a bounce), and a real ARF complaint about
// one marketing message through the inbound listener. GET /api/v1/stats
// then counts, per egress IP over 24 h and 7 days, what left from it, its
// bounces and the complaint against the IP the complained-about message
// left from (127.0.0.2: 1 of 3 delivered, over the line; 127.0.0.1:
// none), and the Stats page in Chromium shows the same rows.
func TestEgressIPReputationE2E(t *testing.T) {
	bounceAddr := freeAddr(t)
	var isp *testnet.MX
	e := uiDaemon(t, nil, func(e *env) {
		e.extra += fmt.Sprintf(`
[bounce]
domain = "bounce.petrel.test"
secret = "verp-secret"
listen = %q
fbl_addresses = ["fbl@petrel.test"]
`, bounceAddr) + bulkPool("127.0.0.2")
		isp = e.mx(3, "isp.test", testnet.MXScript{})
		e.mx(4, "reject.test", testnet.MXScript{OnRcpt: func(string, int) error {
			return testnet.Reply(550, "5.1.1", "no such user")
		}})
	})
	send := func(stream, rcpt string) {
		t.Helper()
		if err := e.sendSMTP("news@sender.test", []string{rcpt}, "From: news@sender.test\r\nTo: "+rcpt+
			"\r\nX-Petrel-Stream: "+stream+"\r\nSubject: s\r\n\r\nbody\r\n"); err != nil {
			t.Fatalf("send to %s: %v", rcpt, err)
		}
	}
	for i := 0; i < 3; i++ {
		send("transactional", fmt.Sprintf("t%d@isp.test", i))
		send("marketing", fmt.Sprintf("m%d@isp.test", i))
	}
	send("marketing", "gone@reject.test")
	waitFor(t, 30*time.Second, "six messages at the MX", func() bool { return isp.Count() >= 6 })
	rp := ""
	for _, m := range isp.Mails() {
		if slices.Contains(m.Rcpts, "m1@isp.test") {
			rp = m.From
		}
	}
	if rp == "" {
		t.Fatal("no message to m1@isp.test at the MX")
	}
	if err := smtp.SendMail(bounceAddr, nil, "feedback@provider.test", []string{"fbl@petrel.test"},
		report(t, "arf", "TO", "fbl@petrel.test", "RP", rp, "RCPT", "m1@isp.test", "FT", "abuse")); err != nil {
		t.Fatalf("ARF to the inbound listener: %v", err)
	}

	type ipStats struct {
		IP                                   string
		Sent, Delivered, Bounced, Complained int64
		BounceRate                           float64 `json:"bounce_rate"`
		ComplaintRate                        float64 `json:"complaint_rate"`
	}
	var st struct {
		EgressIPs []struct {
			Window string
			IPs    []ipStats
		} `json:"egress_ips"`
	}
	want := map[string]ipStats{
		"127.0.0.1": {IP: "127.0.0.1", Sent: 3, Delivered: 3},
		"127.0.0.2": {IP: "127.0.0.2", Sent: 4, Delivered: 3, Bounced: 1, Complained: 1, BounceRate: 0.25, ComplaintRate: 1.0 / 3},
	}
	check := func() error {
		if code, err := e.api("GET", "/api/v1/stats", nil, &st); err != nil || code != 200 {
			return fmt.Errorf("stats: %d %v", code, err)
		}
		if len(st.EgressIPs) != 2 || st.EgressIPs[0].Window != "24h0m0s" || st.EgressIPs[1].Window != "168h0m0s" {
			return fmt.Errorf("egress IP windows %+v, want 24h and 7 days", st.EgressIPs)
		}
		for _, w := range st.EgressIPs {
			if len(w.IPs) != len(want) {
				return fmt.Errorf("window %s: %+v, want %v", w.Window, w.IPs, want)
			}
			for _, got := range w.IPs {
				if got != want[got.IP] {
					return fmt.Errorf("window %s: %+v, want %+v", w.Window, got, want[got.IP])
				}
			}
		}
		return nil
	}
	var last error
	if !testnet.Wait(30*time.Second, func() bool { last = check(); return last == nil }) {
		t.Fatalf("per-IP reputation: %v", last)
	}

	u := &ui{t: t, ctx: browser(t, "en-US,en"), base: "http://" + e.http, shot: artifacts(t)}
	u.login(uiOwner, uiPassword)
	u.page("#/stats")
	for _, w := range []string{"24h", "7d"} {
		for ip, want := range map[string]string{
			"127.0.0.1": "127.0.0.1|3|3|0|0|0%|0%|under",
			"127.0.0.2": "127.0.0.2|4|3|1|1|25%|33.3%|over",
		} {
			sel := fmt.Sprintf(`#stats-ip-table-%s tr[data-ip="%s"]`, w, ip)
			u.waitText(10*time.Second, sel, func(s string) bool { return s != "" })
			var cells string
			u.run("cells of "+sel, chromedp.Evaluate(fmt.Sprintf(`[...document.querySelectorAll(%q)].map(td => td.textContent).join("|")`, sel+" td"), &cells))
			if cells != want {
				t.Errorf("Stats page, %s, %s: %q, want %q", w, ip, cells, want)
			}
		}
	}
	u.screenshot("stats-egress-ips")
}
