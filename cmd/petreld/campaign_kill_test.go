package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCampaignABAndTimeZoneKill9ThroughDaemon: an A/B test (two
// variants on 20% each, winner after 3 s, then the rest) and a send at
// 09:00-style local wall time in each contact's own time zone (Taipei
// and Oslo passes due at once, the UTC pass a few seconds later) run
// side by side in petreld, which is killed (SIGKILL) three times: during
// the test phase and the first time-zone passes, while the A/B test
// waits for its winner and the UTC pass is not yet due, and during the
// A/B rest and the UTC pass. Counted at the MX: every contact of both
// campaigns gets exactly one message (one Message-ID), the A/B test
// contacts their bucket's variant and the rest the winner's subject, no
// UTC contact before its time; both campaigns end sent with every
// contact counted once.
func TestCampaignABAndTimeZoneKill9ThroughDaemon(t *testing.T) {
	e := newEnv(t)
	k := e.campaignSink(t)
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n"
	e.start()
	e.sendingDomain(t, "shop.test")
	const n = 300
	abAud := e.importContacts(t, n)
	var csv strings.Builder
	csv.WriteString("email,name,time_zone\n")
	zones := []string{"Asia/Taipei", "Europe/Oslo", ""}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "z%d@example.test,Zone %d,%s\n", i, i, zones[i%3])
	}
	tzAud := e.importCSV(t, "zones", csv.String())

	ab := map[string]any{"id": "ab", "audience": abAud, "from": "news@shop.test", "subject": "Hello %first_name%",
		"text": "Dear %name%, news from %city%.\n", "page_size": 5, "rate": 60, "postal_address": "Shop Ltd, 1 Harbour Road, Taipei",
		"ab": map[string]any{"percent": 20, "metric": "opens", "wait": "3s", "variants": []map[string]any{
			{"name": "a", "subject": "A: hello %first_name%"}, {"name": "b", "subject": "B: news for %first_name%"}}}}
	if code, err := e.api("POST", "/api/v1/campaigns", ab, nil); err != nil || code != 201 {
		t.Fatalf("create A/B campaign: %d %v", code, err)
	}
	wall := time.Now().UTC().Add(12 * time.Second)
	tz := map[string]any{"id": "local", "audience": tzAud, "from": "news@shop.test", "subject": "Good morning %first_name%",
		"text": "Good morning, %name%.\n", "page_size": 5, "rate": 60, "postal_address": "Shop Ltd, 1 Harbour Road, Taipei",
		"schedule": map[string]any{"send_at": wall.Format("2006-01-02T15:04:05"), "time_zone": "UTC", "contact_time_zone": true}}
	if code, err := e.api("POST", "/api/v1/campaigns", tz, nil); err != nil || code != 201 {
		t.Fatalf("create time-zone campaign: %d %v", code, err)
	}
	if code, err := e.api("POST", "/api/v1/campaigns/ab/send", nil, nil); err != nil || code != 202 {
		t.Fatalf("send A/B: %d %v", code, err)
	}
	// count is the number of recipients with a prefix at the MX.
	count := func(prefix string) int {
		k.mu.Lock()
		defer k.mu.Unlock()
		c := 0
		for addr := range k.got {
			if strings.HasPrefix(addr, prefix) {
				c++
			}
		}
		return c
	}
	// Kill 1: mid test phase (120 contacts at 60/s) and mid first passes.
	waitFor(t, 30*time.Second, "the A/B test phase and the first passes under way", func() bool { return count("c") >= 20 && count("z") >= 20 })
	e.kill()
	e.start()
	// Kill 2: the A/B test phase done, before the UTC pass is due.
	waitFor(t, 60*time.Second, "the A/B test phase done", func() bool {
		return count("c") >= 120 && count("z") >= 200
	})
	if time.Now().Before(wall) {
		e.kill()
		e.start()
	}
	// Kill 3: mid rest and mid UTC pass.
	waitFor(t, 60*time.Second, "the rest and the UTC pass under way", func() bool { return count("c") >= 150 && count("z") >= 220 })
	e.kill()
	e.start()
	waitFor(t, 120*time.Second, "both campaigns sent", func() bool {
		return e.campaign("ab").Status == "sent" && e.campaign("local").Status == "sent"
	})
	waitFor(t, 60*time.Second, "every contact at the MX", func() bool { return count("c") >= n && count("z") >= n })
	time.Sleep(time.Second) // anything resubmitted twice would arrive now
	k.mu.Lock()
	defer k.mu.Unlock()
	variants := map[string]int{}
	for i := 0; i < n; i++ {
		for _, addr := range []string{fmt.Sprintf("c%d@example.test", i), fmt.Sprintf("z%d@example.test", i)} {
			if len(k.got[addr]) != 1 {
				t.Errorf("%s got %d messages", addr, len(k.got[addr]))
			}
		}
		for _, body := range k.got[fmt.Sprintf("c%d@example.test", i)] {
			switch subj := header(t, []byte(body), "Subject"); {
			case strings.HasPrefix(subj, "A: "):
				variants["a"]++
			case strings.HasPrefix(subj, "B: "):
				variants["b"]++
			default:
				t.Errorf("c%d: subject %q is no variant's", i, subj)
			}
		}
		for _, body := range k.got[fmt.Sprintf("z%d@example.test", i)] {
			if i%3 == 2 {
				if d, err := time.Parse(time.RFC1123Z, header(t, []byte(body), "Date")); err == nil && d.Before(wall.Add(-time.Second)) {
					t.Errorf("z%d (UTC) mailed at %v, before its time %v", i, d, wall)
				}
			}
		}
	}
	// No opens: the first variant wins the tie and gets the rest too.
	if variants["b"] < 30 || variants["b"] > 90 || variants["a"]+variants["b"] != n {
		t.Errorf("variants %v: b is only the test phase's share (~60 of %d)", variants, n)
	}
	for _, id := range []string{"ab", "local"} {
		if c := e.campaign(id); c.Progress.Sent != n || !c.Progress.Done {
			t.Errorf("%s: progress %+v, want %d sent", id, c.Progress, n)
		}
	}
}
