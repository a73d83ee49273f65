package main

// End-to-end tests of bounce and complaint handling, webhooks, metrics and
// alarms: petreld runs as a child process with a test DNS server, test MX
// hosts, its inbound bounce listener and a webhook receiver, all on
// loopback.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/internal/testnet"
)

// hookSink is a webhook endpoint that answers 503 while down, checks
// signatures and records every event it accepts (duplicates included).
type hookSink struct {
	secret []byte
	mu     sync.Mutex
	down   bool
	failed int
	bad    int
	got    []map[string]any
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		h.failed++
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var ev map[string]any
	if !events.Verify(h.secret, r.Header.Get(events.HeaderTimestamp), body, r.Header.Get(events.HeaderSignature)) ||
		json.Unmarshal(body, &ev) != nil {
		h.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h.got = append(h.got, ev)
}

func (h *hookSink) setDown(v bool) {
	h.mu.Lock()
	h.down = v
	h.mu.Unlock()
}

// has reports whether an event of typ for rcpt arrived.
func (h *hookSink) has(typ, rcpt string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.got {
		if ev["type"] == typ && ev["recipient"] == rcpt {
			return true
		}
	}
	return false
}

func (e *env) suppressedIn(stream, addr string) bool {
	code, err := e.api("GET", "/api/v1/suppressions/"+stream+"/"+addr, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return code == http.StatusOK
}

func (e *env) metrics() string {
	resp, err := http.Get("http://" + e.http + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// returnPathOf waits for the n-th mail at mx and returns its envelope sender.
func returnPathOf(t *testing.T, mx *testnet.MX, n int) string {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("mail %d at the MX", n), func() bool { return mx.Count() >= n })
	return mx.Mails()[n-1].From
}

// report fills events/testdata/<name>.eml (the events package's test
// reports) with fields and returns it with CRLF line ends.
func report(t *testing.T, name string, fields ...string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", "testdata", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		raw = bytes.ReplaceAll(raw, []byte("{{"+fields[i]+"}}"), []byte(fields[i+1]))
	}
	return bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
}

func e2eDSN(t *testing.T, to, rcpt string) []byte {
	return report(t, "dsn", "TO", to, "RP", to, "RCPT", rcpt, "ACTION", "failed", "STATUS", "5.1.1",
		"DIAG", "550 5.1.1 <"+rcpt+">: Recipient address rejected: User unknown in local recipient table")
}

func TestBouncesComplaintsWebhooksE2E(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "example.test", testnet.MXScript{})
	sink := &hookSink{secret: []byte("hook-secret"), down: true}
	hookSrv := httptest.NewServer(sink)
	defer hookSrv.Close()
	bounceAddr := freeAddr(t)
	e.extra = fmt.Sprintf(`
[bounce]
domain = "bounce.petrel.test"
secret = "verp-secret"
listen = %q
fbl_addresses = ["fbl@petrel.test"]

[[webhooks]]
name = "sink"
url = %q
secret = "hook-secret"
events = ["delivered", "bounced", "complained", "suppressed"]
max_backoff = "1s"
`, bounceAddr, hookSrv.URL+"/hook")
	e.start()

	// 1. A delivered message carries a VERP return path within 64 octets.
	if err := e.sendSMTP("alice@sender.test", []string{"bob@example.test"},
		"From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: one\r\n\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	rp := returnPathOf(t, mx, 1)
	if local := rp[:strings.LastIndexByte(rp, '@')]; !strings.HasSuffix(rp, "@bounce.petrel.test") || len(local) > 64 {
		t.Fatalf("return path %q: want bounces+token@bounce.petrel.test with a local part <= 64 octets (%d)", rp, len(local))
	}

	// 2. An asynchronous DSN over SMTP to the inbound listener suppresses
	// bob in his stream; the next message to him is not sent.
	if err := smtp.SendMail(bounceAddr, nil, "", []string{rp}, e2eDSN(t, rp, "bob@example.test")); err != nil {
		t.Fatalf("send DSN to the inbound listener: %v", err)
	}
	waitFor(t, 10*time.Second, "bob suppressed", func() bool { return e.suppressedIn("transactional", "bob@example.test") })
	// Whether refused at RCPT or accepted and dropped as suppressed, it must not reach the MX
	// (the MX count is checked below).
	_ = e.sendSMTP("alice@sender.test", []string{"bob@example.test"},
		"From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: two\r\n\r\nhello again\r\n")
	// Relay through the listener is refused.
	if err := smtp.SendMail(bounceAddr, nil, "", []string{"someone@elsewhere.test"}, []byte("Subject: x\r\n\r\nx\r\n")); err == nil {
		t.Error("inbound listener accepted mail for a foreign domain")
	}

	// 3. A forged token is ignored and counted.
	forged := "bounces+" + strings.Repeat("a", 52) + "@bounce.petrel.test"
	if err := smtp.SendMail(bounceAddr, nil, "", []string{forged}, e2eDSN(t, forged, "dan@example.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "forged counter", func() bool {
		return strings.Contains(e.metrics(), "petrel_bounce_forged_total 1")
	})
	if e.suppressedIn("transactional", "dan@example.test") {
		t.Error("forged report suppressed its recipient")
	}

	// 4. An ARF complaint on a marketing message suppresses in marketing only.
	if err := e.sendSMTP("news@sender.test", []string{"carol@example.test"},
		"From: news@sender.test\r\nTo: carol@example.test\r\nX-Petrel-Stream: marketing\r\nSubject: sale\r\n\r\nbuy\r\n"); err != nil {
		t.Fatal(err)
	}
	rp2 := returnPathOf(t, mx, 2)
	if err := smtp.SendMail(bounceAddr, nil, "feedback@provider.test", []string{"fbl@petrel.test"},
		report(t, "arf", "TO", "fbl@petrel.test", "RP", rp2, "RCPT", "carol@example.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "carol suppressed in marketing", func() bool { return e.suppressedIn("marketing", "carol@example.test") })
	if e.suppressedIn("transactional", "carol@example.test") {
		t.Error("complaint suppressed carol in transactional too")
	}
	if mx.Count() != 2 {
		t.Errorf("MX got %d messages, want 2 (the message to suppressed bob must not be sent)", mx.Count())
	}

	// 5. The webhook endpoint comes back: every event arrives, signed.
	sink.setDown(false)
	waitFor(t, 20*time.Second, "webhook events", func() bool {
		return sink.has("delivered", "bob@example.test") && sink.has("bounced", "bob@example.test") &&
			sink.has("complained", "carol@example.test") && sink.has("suppressed", "carol@example.test") &&
			sink.has("delivered", "carol@example.test")
	})
	sink.mu.Lock()
	seen, dups := map[string]bool{}, 0
	for _, ev := range sink.got {
		seq, _ := ev["seq"].(string)
		if seen[seq] {
			dups++
		}
		seen[seq] = true
	}
	t.Logf("webhook: %d events, %d duplicates, %d refused while down, %d bad signatures", len(sink.got), dups, sink.failed, sink.bad)
	if sink.failed == 0 || sink.bad != 0 {
		t.Errorf("webhook: %d attempts while down (want > 0), %d bad signatures", sink.failed, sink.bad)
	}
	sink.mu.Unlock()
	var wh struct {
		Webhooks []events.WebhookStats `json:"webhooks"`
	}
	if code, err := e.api("GET", "/api/v1/webhooks", nil, &wh); err != nil || code != 200 || len(wh.Webhooks) != 1 || wh.Webhooks[0].Delivered == 0 {
		t.Errorf("GET /api/v1/webhooks = %d %v %+v", code, err, wh)
	}

	// 6. Metrics after the run.
	m := e.metrics()
	for _, name := range []string{
		`petrel_messages_total{event="delivered",provider="other",stream="transactional"}`,
		`petrel_messages_total{event="received"`,
		`petrel_bounces_total{reason="userunknown",stream="transactional"} 1`,
		`petrel_complaints_total{domain="sender.test",stream="marketing"} 1`,
		`petrel_stream_complaint_rate{stream="marketing"} 1`,
		`petrel_stream_bounce_rate{stream="transactional"}`,
		`petrel_domain_complaint_rate{domain="sender.test",stream="marketing"}`,
		`petrel_webhook_lag_seconds{webhook="sink"}`,
		`petrel_webhook_deliveries_total{webhook="sink"}`,
		`petrel_feedback_reports_total{kind="dsn",outcome="matched"} 1`,
		`petrel_queue_messages`,
	} {
		if !strings.Contains(m, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// 7. petrelctl.
	out, err := e.ctl("stats")
	if err != nil || !strings.Contains(out, "marketing") || !strings.Contains(out, "transactional") {
		t.Errorf("petrelctl stats: %v\n%s", err, out)
	}
	out, err = e.ctl("events", "tail", "-type", "bounced")
	if err != nil || !strings.Contains(out, "bob@example.test") || !strings.Contains(out, "userunknown") {
		t.Errorf("petrelctl events tail: %v\n%s", err, out)
	}
	out, err = e.ctl("bounce", "classify", "-reply", "552 5.2.2 Mailbox full")
	if err != nil || !strings.Contains(out, "mailboxfull") {
		t.Errorf("petrelctl bounce classify: %v\n%s", err, out)
	}
	e.stop()
}

func TestAlarmPausesMarketingE2E(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "example.test", testnet.MXScript{OnRcpt: func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "bad") {
			return testnet.Reply(550, "5.1.1", "user unknown")
		}
		return nil
	}})
	e.extra = `
[bounce]
bounce_rate_alarm = 0.2
alarm_min_sample = 10
pause_marketing_on_alarm = true
`
	e.start()
	send := func(stream, rcpt string) {
		t.Helper()
		if err := e.sendSMTP("news@sender.test", []string{rcpt}, fmt.Sprintf(
			"From: news@sender.test\r\nTo: %s\r\nX-Petrel-Stream: %s\r\nSubject: s\r\n\r\nbody\r\n", rcpt, stream)); err != nil {
			t.Fatal(err)
		}
	}
	// 10 marketing messages, half of them to unknown users: 50% bounces.
	for i := range 5 {
		send("marketing", fmt.Sprintf("good%d@example.test", i))
		send("marketing", fmt.Sprintf("bad%d@example.test", i))
	}
	waitFor(t, 20*time.Second, "marketing paused", func() bool {
		var st events.Stats
		if code, err := e.api("GET", "/api/v1/stats", nil, &st); err != nil || code != 200 {
			return false
		}
		for _, s := range st.Streams {
			if s.Stream == "marketing" && s.Paused {
				return true
			}
		}
		return false
	})
	if !strings.Contains(e.metrics(), `petrel_stream_alarm{kind="bounce",stream="marketing"} 1`) {
		t.Error("petrel_stream_alarm not raised for marketing")
	}
	waitFor(t, 10*time.Second, "hard bounces suppressed", func() bool { return e.suppressedIn("marketing", "bad0@example.test") })
	before := mx.Count()
	// Marketing is held back; transactional keeps flowing.
	send("marketing", "late@example.test")
	send("transactional", "receipt@example.test")
	waitFor(t, 15*time.Second, "transactional delivered while marketing is paused", func() bool {
		for _, m := range mx.Mails() {
			if len(m.Rcpts) == 1 && m.Rcpts[0] == "receipt@example.test" {
				return true
			}
		}
		return false
	})
	for _, m := range mx.Mails()[before:] {
		if m.Rcpts[0] == "late@example.test" {
			t.Fatal("marketing mail sent while the stream is paused")
		}
	}
	out, err := e.ctl("streams", "resume", "marketing")
	if err != nil || !strings.Contains(out, "resumed") {
		t.Fatalf("petrelctl streams resume: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "marketing delivered after resume", func() bool {
		for _, m := range mx.Mails() {
			if len(m.Rcpts) == 1 && m.Rcpts[0] == "late@example.test" {
				return true
			}
		}
		return false
	})
	e.stop()
}
