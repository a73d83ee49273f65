package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/tracking"
)

// TestStatsByProviderThroughDaemon: real mail through petreld to MX
// hosts that DNS names as Google's (for a custom domain) and QQ's, one
// recipient refused with 550; opens and clicks on tokens signed with the
// daemon's tracking.key. The stats API splits the campaign by provider
// (MX-based: biz.test is Google) and all campaigns by type, machine opens
// apart and unique opens exact; after kill -9 and a restart nothing is
// counted twice.
func TestStatsByProviderThroughDaemon(t *testing.T) {
	e := newEnv(t)
	for _, m := range []struct {
		ip, host, domain string
		script           testnet.MXScript
	}{
		{"127.0.0.2", "aspmx.l.google.com", "biz.test", testnet.MXScript{}},
		{"127.0.0.3", "mx3.qq.com", "qq.com", testnet.MXScript{OnRcpt: func(rcpt string, _ int) error {
			if strings.HasPrefix(rcpt, "nobody@") {
				return testnet.Reply(550, "5.1.1", "no such user")
			}
			return nil
		}}},
	} {
		mx, err := testnet.StartMX(testnet.MXOptions{Addr: fmt.Sprintf("%s:%d", m.ip, e.mxPort), Script: m.script, Domain: m.host})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mx.Close() })
		e.dns.Add(fmt.Sprintf("%s. 60 IN MX 10 %s.", m.domain, m.host), fmt.Sprintf("%s. 60 IN A %s", m.host, m.ip))
	}
	e.start()
	for _, msg := range []map[string]any{
		{"from": "news@sender.test", "to": []string{"a@biz.test", "b@biz.test", "c@qq.com", "nobody@qq.com"}, "subject": "Sale", "text": "t",
			"campaign": "spring", "stream": "marketing"},
		{"from": "shop@sender.test", "to": []string{"r@biz.test"}, "subject": "Receipt", "text": "t", "campaign": "receipt", "stream": "transactional"},
	} {
		if code, err := e.api("POST", "/api/v1/messages", msg, nil); err != nil || code != 202 {
			t.Fatalf("inject: %d %v", code, err)
		}
	}
	report := func(path string) tracking.CampaignReport {
		var r tracking.CampaignReport
		if code, err := e.api("GET", path, nil, &r); err != nil || code != 200 {
			t.Fatalf("%s: %d %v", path, code, err)
		}
		return r
	}
	waitFor(t, 20*time.Second, "3 delivered and 1 bounced in spring", func() bool {
		r := report("/api/v1/stats/campaigns/spring")
		return r.Delivered == 3 && r.Bounced == 1
	})

	s := daemonSigner(t, e)
	sent := time.Now().Add(-time.Hour).Unix()
	tok := func(kind tracking.Kind, rcpt, provider string) string {
		v, err := s.Encode(tracking.Token{Kind: kind, Campaign: "spring", Message: "spring:" + rcpt, Recipient: rcpt, URL: "https://shop.test/",
			Sent: sent, Provider: provider, Stream: "marketing"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	hit := func(method, path string) {
		req, _ := http.NewRequest(method, "http://"+e.http+path, nil)
		req.Header.Set("User-Agent", "Mozilla/5.0 (Macintosh) Firefox/133")
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirect following
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	hit("GET", "/t/o/"+tok(tracking.Open, "a", "google")+".gif")
	hit("GET", "/t/o/"+tok(tracking.Open, "a", "google")+".gif")
	hit("HEAD", "/t/o/"+tok(tracking.Open, "b", "google")+".gif") // a scanner: machine
	hit("GET", "/t/c/"+tok(tracking.Click, "a", "google"))
	hit("GET", "/t/o/"+tok(tracking.Open, "c", "qq")+".gif")

	check := func(when string) {
		t.Helper()
		var r tracking.CampaignReport
		waitFor(t, 10*time.Second, when+": engagement in the stats", func() bool {
			r = report("/api/v1/stats/campaigns/spring?by=provider")
			if r.Opens > 3 || r.Clicks > 1 {
				t.Fatalf("%s: counted twice: %+v", when, r)
			}
			return r.Opens == 3 && r.Clicks == 1
		})
		if r.Delivered != 3 || r.Bounced != 1 || r.UniqueOpens != 2 || r.MachineOpens != 1 || r.UniqueClicks != 1 || r.By != "provider" {
			t.Fatalf("%s: spring %+v", when, r)
		}
		by := map[string]tracking.Slice{}
		for _, sl := range r.Breakdown {
			by[sl.Value] = sl
		}
		if g := by["google"]; g.Delivered != 2 || g.Opens != 2 || g.UniqueOpens != 1 || g.MachineOpens != 1 || g.OpenRate != 0.5 || g.UniqueClicks != 1 {
			t.Fatalf("%s: google %+v", when, g)
		}
		if q := by["qq"]; q.Delivered != 1 || q.Bounced != 1 || q.UniqueOpens != 1 || q.BounceRate != 0.5 {
			t.Fatalf("%s: qq %+v", when, q)
		}
		var types tracking.DimReport
		if code, err := e.api("GET", "/api/v1/stats/types", nil, &types); err != nil || code != 200 {
			t.Fatalf("types: %d %v", code, err)
		}
		tm := map[string]tracking.Slice{}
		for _, sl := range types.Slices {
			tm[sl.Value] = sl
		}
		if tm["marketing"].Delivered != 3 || tm["transactional"].Delivered != 1 || tm["marketing"].UniqueOpens != 2 {
			t.Fatalf("%s: types %+v", when, types)
		}
		var provs tracking.DimReport
		if code, err := e.api("GET", "/api/v1/stats/providers", nil, &provs); err != nil || code != 200 {
			t.Fatalf("providers: %d %v", code, err)
		}
		for _, sl := range provs.Slices {
			if sl.Value == "google" && sl.Delivered != 3 { // spring's two and the receipt
				t.Fatalf("%s: all-campaign google %+v", when, sl)
			}
		}
	}
	check("before the kill")
	var bad struct{ Error struct{ Code string } }
	if code, _ := e.api("GET", "/api/v1/stats/campaigns/spring?by=weather", nil, &bad); code != 400 || bad.Error.Code != "invalid_request" {
		t.Fatalf("?by=weather: %d %+v", code, bad)
	}
	// The engagement log syncs its WAL every second (a pixel is not an
	// acknowledged write): wait that second out, then kill.
	time.Sleep(1500 * time.Millisecond)
	e.kill()
	e.start()
	time.Sleep(1500 * time.Millisecond) // a follower pass after the restart must add nothing
	check("after kill -9")
}
