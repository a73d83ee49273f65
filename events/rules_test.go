package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

// applyAll runs the rules loop's page handler over every event recorded
// so far (what the loop does after each wake-up), synchronously.
func (w *world) applyAll() {
	w.t.Helper()
	evs, err := w.q.Events(context.Background(), queue.EventFilter{Limit: 1000})
	if err != nil {
		w.t.Fatal(err)
	}
	if n, err := w.svc.applyPage(context.Background(), evs); err != nil || n != len(evs) {
		w.t.Fatalf("applyPage = %d, %v; want %d", n, err, len(evs))
	}
}

func TestSyncBounceRules(t *testing.T) {
	bc := testBounceConfig()
	bc.SoftBounceLimit = 3
	w := newWorld(t, bc, nil)
	ctx := context.Background()
	rec := func(typ, stream, rcpt, msg string, code int, enh, reply string) {
		t.Helper()
		ev := queue.Event{Type: typ, MsgID: msg, Recipient: rcpt, Stream: stream, Code: code, Enhanced: enh,
			Reply: reply, Attempt: 1, RemoteMX: "mx.example.test"}
		if err := w.q.AppendEvents(ctx, []queue.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	// Hard: suppressed at once, in that stream only.
	rec("bounced", "marketing", "hard@example.test", "m1", 550, "5.1.1", "550 5.1.1 user unknown")
	// About us: never suppresses.
	for i := range 5 {
		rec("bounced", "marketing", "rep@example.test", fmt.Sprintf("r%d", i), 550, "5.7.1",
			"550 5.7.1 Service unavailable; client host blocked using Spamhaus; poor reputation")
	}
	// Soft: two distinct messages, the first seen twice (a retry).
	rec("deferred", "marketing", "full@example.test", "s1", 452, "4.2.2", "452 4.2.2 Mailbox full")
	rec("deferred", "marketing", "full@example.test", "s1", 452, "4.2.2", "452 4.2.2 Mailbox full")
	rec("deferred", "marketing", "full@example.test", "s2", 452, "4.2.2", "452 4.2.2 Mailbox full")
	// Our own policy refusals say nothing about the address.
	if err := w.q.AppendEvents(ctx, []queue.Event{{Type: "bounced", MsgID: "p1", Recipient: "policy@example.test",
		Stream: "marketing", Reply: "policy: bounce action for example.test: 550 5.1.1 user unknown", Reason: "policy", Attempt: 1}}); err != nil {
		t.Fatal(err)
	}
	// Connection failures say nothing about the mailbox.
	for i := range 5 {
		rec("deferred", "marketing", "net@example.test", fmt.Sprintf("n%d", i), 0, "4.4.2", "local: connection refused")
	}
	w.applyAll()
	checks := []struct {
		stream, rcpt string
		want         bool
	}{
		{"marketing", "hard@example.test", true},
		{"transactional", "hard@example.test", false},
		{"marketing", "rep@example.test", false},
		{"marketing", "full@example.test", false}, // 2 of 3 so far
		{"marketing", "net@example.test", false},
		{"marketing", "policy@example.test", false},
	}
	for _, c := range checks {
		if got := w.suppressed(c.stream, c.rcpt); got != c.want {
			t.Errorf("suppressed(%s, %s) = %v, want %v", c.stream, c.rcpt, got, c.want)
		}
	}

	// The count is durable: a restarted service adds the third message
	// and suppresses.
	if err := w.svc.Close(); err != nil {
		t.Fatal(err)
	}
	w.open(nil)
	rec("bounced", "marketing", "full@example.test", "s3", 552, "5.2.2", "552 5.2.2 Mailbox full, over quota")
	w.applyAll()
	if !w.suppressed("marketing", "full@example.test") {
		t.Fatal("third soft bounce within the window did not suppress (count lost across restart?)")
	}
	if got := w.metric("petrel_soft_bounce_suppressions_total"); got != 1 {
		t.Errorf("petrel_soft_bounce_suppressions_total = %v, want 1", got)
	}
}

func TestSoftBounceWindow(t *testing.T) {
	w := newWorld(t, testBounceConfig(), nil)
	st := w.svc.st
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		msg  string
		at   time.Duration
		want int
	}{
		{"a", 0, 1},
		{"a", time.Hour, 1}, // same message again
		{"b", 2 * time.Hour, 2},
		{"c", 73 * time.Hour, 2}, // a (t0+1h) fell out of the 72h window; b stays
		{"d", 200 * time.Hour, 1},
	}
	for _, s := range steps {
		n, err := st.addSoft("m", "X@Example.test", s.msg, t0.Add(s.at), 72*time.Hour)
		if err != nil || n != s.want {
			t.Fatalf("addSoft(%s at +%s) = %d, %v; want %d", s.msg, s.at, n, err, s.want)
		}
	}
}

func TestAlarmPausesMarketing(t *testing.T) {
	bc := testBounceConfig()
	bc.AlarmMinSample = 20
	bc.PauseMarketingOnAlarm = true
	w := newWorld(t, bc, nil)
	now := time.Now()
	feed := func(stream, typ string, n int) {
		for i := range n {
			w.svc.count(queue.Event{Type: typ, Stream: stream, Recipient: fmt.Sprintf("u%d@gmail.com", i),
				RemoteMX: "gmail-smtp-in.l.google.com", Attempt: 1, Reason: "userunknown", Time: now}, true, true)
		}
	}
	// 18 sent, 2 bounced (11%): under the minimum sample, no alarm.
	feed("marketing", "delivered", 16)
	feed("marketing", "bounced", 2)
	feed("transactional", "delivered", 30)
	feed("transactional", "bounced", 10)
	if _, paused := w.svc.Paused("marketing"); paused {
		t.Fatal("paused before the minimum sample")
	}
	feed("marketing", "delivered", 2)
	if _, paused := w.svc.Paused("marketing"); !paused {
		t.Fatal("marketing not paused at 10% bounces over 20 messages")
	}
	if _, paused := w.svc.Paused("transactional"); paused {
		t.Fatal("transactional paused: only the marketing stream may be")
	}
	if w.metric("petrel_stream_alarm", "stream", "marketing", "kind", "bounce") != 1 ||
		w.metric("petrel_stream_alarm", "stream", "transactional", "kind", "bounce") != 1 {
		t.Error("petrel_stream_alarm not set for both streams")
	}

	sh := w.sh
	ctx := context.Background()
	_, err := sh.AcquireConn(ctx, mta.Dest{Domain: "gmail.com", Stream: "marketing"})
	var pe *mta.PolicyError
	if !errors.As(err, &pe) || pe.Bounce {
		t.Fatalf("AcquireConn(marketing) = %v, want a deferring *mta.PolicyError", err)
	}
	if err := sh.AcquireMessage(ctx, mta.Dest{Stream: "marketing"}, ""); !errors.As(err, &pe) || pe.Bounce {
		t.Fatalf("AcquireMessage(marketing) = %v, want a deferring *mta.PolicyError", err)
	}
	if _, err := sh.AcquireConn(ctx, mta.Dest{Domain: "gmail.com", Stream: "transactional"}); err != nil {
		t.Fatalf("AcquireConn(transactional) = %v", err)
	}

	st := w.svc.Stats()
	var mk *StreamStats
	for i := range st.Streams {
		if st.Streams[i].Stream == "marketing" {
			mk = &st.Streams[i]
		}
	}
	if mk == nil || mk.Sent != 20 || mk.Bounced != 2 || !mk.Paused || len(mk.Providers) != 1 || mk.Providers[0].Provider != "google" {
		t.Fatalf("stats = %+v", st)
	}

	// The pause survives a restart; resume over HTTP lifts it.
	if err := w.svc.Close(); err != nil {
		t.Fatal(err)
	}
	w.open(nil)
	if _, paused := w.svc.Paused("marketing"); !paused {
		t.Fatal("pause lost across restart")
	}
	srv := httptest.NewServer(w.svc.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/api/v1/streams/marketing/resume", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("resume: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, paused := w.svc.Paused("marketing"); paused {
		t.Fatal("still paused after resume")
	}
	if _, err := w.sh.AcquireConn(ctx, mta.Dest{Stream: "marketing"}); err != nil {
		t.Fatalf("AcquireConn after resume = %v", err)
	}
}

func TestProvider(t *testing.T) {
	tests := []struct{ mx, rcpt, want string }{
		{"gmail-smtp-in.l.google.com.", "", "google"},
		{"", "someone@gmail.com", "google"},
		{"example-com.mail.protection.outlook.com", "a@example.com", "outlook"},
		{"mta7.am0.yahoodns.net", "", "yahoo"},
		{"mx01.mail.icloud.com", "", "apple"},
		{"mx.notgoogle.com", "", "other"},
		{"mxbiz1.qq.com", "boss@company.cn", "qq"},
		{"", "someone@foxmail.com", "qq"},
		{"163mx01.mxmail.netease.com.", "", "163"},
		{"", "x@126.com", "163"},
		{"", "x@yeah.net", "163"},
		{"mx.notqq.com", "", "other"},
		{"", "", "other"},
	}
	for _, tt := range tests {
		if got := Provider(tt.mx, tt.rcpt); got != tt.want {
			t.Errorf("Provider(%q, %q) = %q, want %q", tt.mx, tt.rcpt, got, tt.want)
		}
	}
}
