package main

import (
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// bulkPool is the shaping configuration of two egress pools: "default"
// binding to 127.0.0.1 and "bulk", marketing's, binding to bulkIP.
func bulkPool(bulkIP string) string {
	return `
[shaping.streams]
marketing = "bulk"

[[shaping.pool]]
name = "default"
[[shaping.pool.source]]
name = "main"
bind_address = "127.0.0.1"

[[shaping.pool]]
name = "bulk"
[[shaping.pool.source]]
name = "bulk1"
bind_address = "` + bulkIP + `"
`
}

// TestBlocklistPausesListedPoolE2E: petreld's egress pools bind to
// 127.0.0.1 (default) and 127.0.0.3 (bulk, marketing's pool); the test DNS
// server lists 127.0.0.3 on the IP list (127.0.0.2, SBL) and answers the
// "query refused" code for 127.0.0.1 and DBL's 127.0.1.255 for the extra
// domain. `petrelctl reputation check` reports the one listing (refusals
// are not listings), a blocklisted event and the metrics follow, and the
// listed pool's stream (marketing) is paused while transactional mail,
// whose egress is not listed, is delivered.
func TestBlocklistPausesListedPoolE2E(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "example.test", testnet.MXScript{})
	e.dns.Add("3.0.0.127.zen.test. 0 IN A 127.0.0.2",
		"1.0.0.127.zen.test. 0 IN A 127.255.255.254",
		"sender.test.dbl.test. 0 IN A 127.0.1.255")
	e.extra = bulkPool("127.0.0.3") + `
[reputation]
pause_on_listing = true
extra_domains = ["sender.test"]

[[reputation.list]]
name = "zen"
zone = "zen.test"
kind = "ip"
refused = ["127.255.255.0/24"]
[reputation.list.codes]
"127.0.0.2" = "SBL"

[[reputation.list]]
name = "dbl"
zone = "dbl.test"
kind = "domain"
refused = ["127.0.1.255"]
`
	e.start()
	out, err := e.ctl("reputation", "check")
	if err != nil {
		t.Fatalf("petrelctl reputation check: %v\n%s", err, out)
	}
	for _, want := range [][]string{{"127.0.0.3", "zen", "LISTED", "127.0.0.2 SBL"}, {"127.0.0.1", "zen", "refused"},
		{"sender.test", "dbl", "refused"}, {"1 listed of 3 checks"}} {
		if !hasLineWith(out, want) {
			t.Errorf("petrelctl reputation check: no line with %q in\n%s", want, out)
		}
	}
	if out, err := e.ctl("events", "tail", "-type", "blocklisted"); err != nil || !strings.Contains(out, "127.0.0.3") || strings.Contains(out, "127.0.0.1 ") {
		t.Errorf("blocklisted events: %v\n%s", err, out)
	}
	if m := e.metrics(); !strings.Contains(m, `petrel_reputation_listed{kind="ip",list="zen",target="127.0.0.3"} 1`) ||
		!strings.Contains(m, "petrel_reputation_alarm 1") {
		t.Errorf("reputation metrics missing:\n%s", grepLines(m, "petrel_reputation"))
	}
	send := func(stream, rcpt string) {
		t.Helper()
		if err := e.sendSMTP("news@sender.test", []string{rcpt}, "From: news@sender.test\r\nTo: "+rcpt+
			"\r\nX-Petrel-Stream: "+stream+"\r\nSubject: s\r\n\r\nbody\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	send("marketing", "news@example.test")
	send("transactional", "receipt@example.test")
	waitFor(t, 15*time.Second, "transactional delivered from the unlisted pool", func() bool {
		for _, m := range mx.Mails() {
			if m.Rcpts[0] == "receipt@example.test" {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	for _, m := range mx.Mails() {
		if m.Rcpts[0] == "news@example.test" {
			t.Fatal("marketing mail sent from the blocklisted pool")
		}
	}
	out, err = e.ctl("queue", "list")
	if err != nil || !strings.Contains(out, "news@example.test") {
		t.Errorf("marketing message not held in the queue: %v\n%s", err, out)
	}
	e.stop()
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// hasLineWith reports whether one line of s contains every word of words.
func hasLineWith(s string, words []string) bool {
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}
