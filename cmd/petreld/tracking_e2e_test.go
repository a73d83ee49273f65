package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingThroughDaemon: the public tracker of a real petreld answers
// a click token signed with its tracking.key with a redirect to exactly
// the sealed link and an open token with the 43-byte pixel; a forged
// token is a 404; both engagements reach the event log (batched by the
// engagement log's forwarder) as "clicked" and "opened" events, and
// survive a restart of the daemon.
func TestTrackingThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.start()
	s := daemonSigner(t, e)
	sent := time.Now().Add(-time.Hour).Unix()
	click, _ := s.Encode(tracking.Token{Kind: tracking.Click, Campaign: "spring", Message: "spring:c1", Recipient: "c1", Link: 0, URL: "https://shop.test/sale?x=1", Sent: sent})
	open, _ := s.Encode(tracking.Token{Kind: tracking.Open, Campaign: "spring", Message: "spring:c1", Recipient: "c1", Sent: sent})
	forged, _ := mustSigner(t).Encode(tracking.Token{Kind: tracking.Click, Message: "m", Recipient: "r", URL: "https://evil.test/"})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+e.http+path, nil) // no API key: public
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := get("/t/c/" + click); resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shop.test/sale?x=1" {
		t.Fatalf("click: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get("/t/o/" + open + ".gif"); resp.StatusCode != 200 || len(body) != 43 || !bytes.HasPrefix(body, []byte("GIF89a")) {
		t.Fatalf("pixel: %d %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ := get("/t/c/" + forged); resp.StatusCode != 404 || resp.Header.Get("Location") != "" {
		t.Fatalf("forged token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	type ev struct {
		Type, Campaign, Recipient, URL string
		Machine                        bool
	}
	events := func(typ string) []ev {
		var page struct{ Events []ev }
		if code, err := e.api("GET", "/api/v1/events?type="+typ, nil, &page); err != nil || code != 200 {
			t.Fatalf("events: %d %v", code, err)
		}
		return page.Events
	}
	waitFor(t, 15*time.Second, "clicked and opened events", func() bool { return len(events("clicked")) == 1 && len(events("opened")) == 1 })
	c := events("clicked")[0]
	if c.Campaign != "spring" || c.Recipient != "c1" || c.URL != "https://shop.test/sale?x=1" || c.Machine {
		t.Fatalf("clicked event %+v", c)
	}
	var rep tracking.CampaignReport
	if code, err := e.api("GET", "/api/v1/stats/campaigns/spring", nil, &rep); err != nil || code != 200 ||
		rep.Opens != 1 || rep.UniqueOpens != 1 || rep.Clicks != 1 || rep.UniqueClicks != 1 || rep.ClickToOpenRate != 1 || rep.ClicksPerLink["0"] != 1 {
		t.Fatalf("campaign stats: %d %v %+v", code, err, rep)
	}
	e.stop()
	e.start()
	time.Sleep(1500 * time.Millisecond) // a forwarder pass after restart must not repeat them
	if n, m := len(events("clicked")), len(events("opened")); n != 1 || m != 1 {
		t.Fatalf("after restart: %d clicked, %d opened events, want 1 and 1", n, m)
	}
}

func mustSigner(t *testing.T) *tracking.Signer {
	s, err := tracking.NewSigner(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// daemonSigner is a Signer with the daemon's tracking.key, so the test
// can make tokens the daemon accepts.
func daemonSigner(t *testing.T, e *env) *tracking.Signer {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.dataDir, "tracking.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := tracking.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
