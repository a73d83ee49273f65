package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/queue"
)

// world is a real queue, a real policy engine and the service, on disk in
// a test directory.
type world struct {
	t    testing.TB
	dir  string
	q    *queue.Queue
	pol  *policy.Engine
	svc  *Service
	reg  *prometheus.Registry
	verp bounce.VERP
	bc   config.BounceConfig
}

func testBounceConfig() config.BounceConfig {
	bc := config.Default().Bounce
	bc.Domain, bc.Secret = "bounce.petrel.test", "verp-secret"
	bc.FBLAddresses = []string{"fbl@petrel.test"}
	return bc
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newWorld opens everything; hooks are webhooks (may be nil).
func newWorld(t testing.TB, bc config.BounceConfig, hooks []config.Webhook) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), bc: bc, verp: bounce.VERP{Domain: bc.Domain, Secret: []byte(bc.Secret)}}
	q, err := queue.Open(filepath.Join(w.dir, "queue"), queue.Options{Logger: quietLog(),
		OnEvent: func(ev queue.Event) {
			if w.svc != nil {
				w.svc.OnEvent(ev)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	w.q = q
	t.Cleanup(func() { q.Close() })
	cfg := config.Default()
	cfg.DataDir = filepath.Join(w.dir, "policy")
	pol, err := policy.New(policy.Options{Config: cfg, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	w.pol = pol
	t.Cleanup(func() { pol.Close() })
	w.open(hooks)
	return w
}

// open (re)creates the service over the same store directory.
func (w *world) open(hooks []config.Webhook) {
	w.t.Helper()
	w.reg = prometheus.NewRegistry()
	svc, err := New(Options{Bounce: w.bc, Webhooks: hooks, Queue: w.q, Suppressor: w.pol,
		Dir: filepath.Join(w.dir, "feedback"), Registry: w.reg, Logger: quietLog(), RetryBase: 5 * time.Millisecond})
	if err != nil {
		w.t.Fatal(err)
	}
	w.svc = svc
	w.t.Cleanup(func() { svc.Close() })
}

// enqueue stores a message and returns its ID.
func (w *world) enqueue(stream string, rcpts ...string) string {
	w.t.Helper()
	id, err := w.q.Enqueue(context.Background(), queue.Envelope{From: "news@sender.test", Recipients: rcpts, Stream: stream, Campaign: "c1"},
		[]byte("From: news@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

// events returns every event of type typ.
func (w *world) events(typ string) []queue.Event {
	w.t.Helper()
	evs, err := w.q.Events(context.Background(), queue.EventFilter{Type: typ, Limit: 1000})
	if err != nil {
		w.t.Fatal(err)
	}
	return evs
}

func (w *world) suppressed(stream, addr string) bool {
	_, ok := w.pol.Suppressed(stream, addr)
	return ok
}

// metric returns the value of a counter or gauge (summed over labels
// matching every given label pair).
func (w *world) metric(name string, labels ...string) float64 {
	w.t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// dsn is an RFC 3464 report to returnPath about rcpt.
func dsn(returnPath, rcpt, action, status, diag string) []byte {
	return crlf(fmt.Sprintf(`From: MAILER-DAEMON@mx.example.test
To: <%s>
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0"

--B0
Content-Type: text/plain

This is the mail system at host mx.example.test. Your message could not
be delivered to one or more recipients.

--B0
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test

Final-Recipient: rfc822; %s
Action: %s
Status: %s
Remote-MTA: dns; mx.example.test
Diagnostic-Code: smtp; %s

--B0
Content-Type: text/rfc822-headers

Return-Path: <%s>
From: news@sender.test
To: %s
Subject: hi

--B0--
`, returnPath, rcpt, action, status, diag, returnPath, rcpt))
}

// arf is an RFC 5965 complaint about rcpt for a message sent with
// returnPath.
func arf(to, returnPath, rcpt string) []byte {
	return crlf(fmt.Sprintf(`From: feedback@provider.test
To: %s
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A0"

--A0
Content-Type: text/plain

This is an email abuse report for an email message received.

--A0
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: TestFBL/1.0
Version: 1
Original-Mail-From: <%s>
Original-Rcpt-To: <%s>
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000

--A0
Content-Type: message/rfc822

Return-Path: <%s>
From: news@sender.test
To: %s
Subject: Sale
Message-ID: <sale-1@sender.test>

Buy now.
--A0--
`, to, returnPath, rcpt, returnPath, rcpt))
}

// autoReply is an RFC 3834 vacation reply.
func autoReply(to, from string) []byte {
	return crlf(fmt.Sprintf(`From: %s
To: %s
Subject: Out of office: hi
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: text/plain

I am on vacation until Monday and will read your message when I return.
`, from, to))
}
