package bounce

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

const originalMsg = "Return-Path: <app@example.org>\r\n" +
	"From: App <app@example.org>\r\n" +
	"To: a@dest.example, b@dest.example\r\n" +
	"Subject: hello\r\n" +
	"Message-ID: <orig-1@example.org>\r\n" +
	"X-Petrel-ID: MSG42\r\n" +
	"\r\n" +
	"body line\r\n"

func TestBuildDSN(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	failed := []queue.Failure{
		{Rcpt: "a@dest.example", State: queue.StateBounced, Code: 550, Enhanced: "5.1.1",
			Reply: "550 5.1.1 <a@dest.example>: Recipient address rejected: User unknown in local recipient table", RemoteMX: "mx1.dest.example", Reason: "userunknown"},
		{Rcpt: "b@dest.example", State: queue.StateBounced, Code: 552, Enhanced: "5.2.2",
			Reply: "552 5.2.2 Mailbox full", RemoteMX: "mx1.dest.example", Reason: "mailboxfull"},
		{Rcpt: "c@dest.example", State: queue.StateExpired, Code: 451, Enhanced: "4.4.1",
			Reply: "451 4.4.1 connection timed out", RemoteMX: "mx2.dest.example", Reason: "expired"},
	}
	raw, err := BuildDSN(DSNParams{Hostname: "mta.example.org", MsgID: "MSG42",
		Envelope: queue.Envelope{From: "app@example.org", Recipients: []string{"a@dest.example", "b@dest.example", "c@dest.example"}},
		Original: []byte(originalMsg), Failed: failed, Arrival: now.Add(-time.Hour), Now: now})
	if err != nil {
		t.Fatal(err)
	}

	// Independent walk with net/mail + mime/multipart.
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail: %v", err)
	}
	for k, want := range map[string]string{
		"From": "Mail Delivery System <MAILER-DAEMON@mta.example.org>", "To": "<app@example.org>",
		"Auto-Submitted": "auto-replied", "Mime-Version": "1.0",
	} {
		if got := msg.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	media, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || media != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		b, _ := io.ReadAll(p)
		if ct == "message/delivery-status" {
			status = string(b)
		}
		for i, line := range strings.Split(string(b), "\r\n") {
			if len(line) > 998 {
				t.Errorf("%s line %d longer than 998", ct, i)
			}
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts = %v", types)
	}
	for _, want := range []string{"Reporting-MTA: dns;mta.example.org", "Final-Recipient: rfc822;a@dest.example",
		"Status: 5.1.1", "Status: 5.2.2", "Status: 4.4.7", "Action: failed", "Remote-MTA: dns;mx1.dest.example",
		"Diagnostic-Code: smtp;550 5.1.1", "Arrival-Date: ", "Last-Attempt-Date: "} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}

	// Round trip through our own parser.
	rep, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kind != KindDSN || rep.ReportingMTA != "mta.example.org" {
		t.Fatalf("Kind=%s ReportingMTA=%q", rep.Kind, rep.ReportingMTA)
	}
	if rep.OriginalMessageID != "orig-1@example.org" || rep.PetrelID != "MSG42" || rep.OriginalReturnPath != "app@example.org" {
		t.Errorf("original: id=%q petrel=%q rp=%q", rep.OriginalMessageID, rep.PetrelID, rep.OriginalReturnPath)
	}
	want := []struct {
		rcpt, reason, status string
		hard                 bool
	}{
		{"a@dest.example", "userunknown", "5.1.1", true},
		{"b@dest.example", "mailboxfull", "5.2.2", false},
		{"c@dest.example", "expired", "4.4.7", false},
	}
	if len(rep.Bounces) != len(want) {
		t.Fatalf("bounces = %+v", rep.Bounces)
	}
	for i, w := range want {
		b := rep.Bounces[i]
		if b.Recipient != w.rcpt || b.Reason != w.reason || b.Status != w.status || b.Hard != w.hard || b.Action != "failed" {
			t.Errorf("bounce %d = %+v, want %+v", i, b, w)
		}
	}
}

func TestBuildDSNRefuses(t *testing.T) {
	f := []queue.Failure{{Rcpt: "a@b.example", State: queue.StateBounced, Code: 550}}
	if _, err := BuildDSN(DSNParams{Hostname: "h", Failed: f}); !errors.Is(err, ErrNullSender) {
		t.Fatalf("null sender: %v", err)
	}
	if _, err := BuildDSN(DSNParams{Hostname: "h", Envelope: queue.Envelope{From: "x@y.example"}}); err == nil {
		t.Fatal("no failures: want error")
	}
	// Header injection through the reply text stays inside one field.
	raw, err := BuildDSN(DSNParams{Hostname: "h.example", Envelope: queue.Envelope{From: "x@y.example"},
		Failed: []queue.Failure{{Rcpt: "a@b.example", Code: 550, Reply: "550 bad\r\nBcc: victim@evil.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("\r\nBcc:")) {
		t.Fatal("CRLF in reply text injected a header line")
	}
}

func TestDSNHook(t *testing.T) {
	h := NewDSNHook("mta.example.org", "bounce.example.org", func() time.Time { return time.Unix(0, 0) }, slog.New(slog.DiscardHandler))
	h.Use(ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "mta.example.org", Logger: slog.New(slog.DiscardHandler)}))
	hook := h.OnFailure
	f := []queue.Failure{{Rcpt: "a@b.example", State: queue.StateBounced, Code: 550, Enhanced: "5.1.1", Reply: "no such user"}}
	tests := []struct {
		name string
		from string
		want bool
	}{
		{"normal sender", "app@example.org", true},
		{"null sender", "", false},
		{"our VERP sender", VERP{Domain: "bounce.example.org", Secret: []byte("k")}.Encode("M", 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm := hook("M", queue.Envelope{From: tt.from, Stream: "transactional"}, []byte(originalMsg), f)
			if (nm != nil) != tt.want {
				t.Fatalf("got %v, want DSN=%v", nm, tt.want)
			}
			if nm != nil && (nm.Envelope.From != "" || nm.Envelope.Recipients[0] != tt.from || nm.Envelope.Source != "dsn") {
				t.Fatalf("DSN envelope = %+v", nm.Envelope)
			}
		})
	}
}

func queueEnv(from string) queue.Envelope {
	return queue.Envelope{From: from, Recipients: []string{"a@dest.example"}}
}

func failuresFor(rcpt string) []queue.Failure {
	return []queue.Failure{{Rcpt: rcpt, State: queue.StateBounced, Code: 550, Enhanced: "5.1.1",
		Reply: "550 5.1.1 user unknown", RemoteMX: "mx.dest.example", Reason: "userunknown"}}
}

// dsnPolicy suppresses one address and signs nothing; it counts the
// messages it prepared.
type dsnPolicy struct{ prepared int }

func (*dsnPolicy) Suppressed(_, addr string) (string, bool) {
	return "hard_bounce", addr == "gone@example.org"
}
func (*dsnPolicy) CheckSender(context.Context, string) error {
	return errors.New("MAILER-DAEMON's domain is not a sending domain") // DSNs skip the check
}
func (p *dsnPolicy) PrepareMessage(_ context.Context, m *mta.Message) error {
	p.prepared++
	if m.Generated {
		m.Insert("X-Test-Generated: yes\r\n")
	}
	return nil
}

// TestDSNThroughIngest: a bounce in the real queue produces a DSN that
// went through ingest's entry point (Received by the reporting host,
// prepared by the policy as generated mail, no sender-domain check) and is
// committed with the bounce; a sender suppressed at ingest gets none.
func TestDSNThroughIngest(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	hook := NewDSNHook("mta.example.org", "bounce.example.org", nil, log)
	q, err := queue.Open(t.TempDir(), queue.Options{OnFailure: hook.OnFailure, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	pol := &dsnPolicy{}
	hook.Use(ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "mta.example.org", Spool: q, Policy: pol, Logger: log}))
	ctx := context.Background()

	for _, tc := range []struct {
		sender  string
		wantDSN bool
	}{{"app@example.org", true}, {"gone@example.org", false}} {
		id, err := q.Enqueue(ctx, queue.Envelope{From: tc.sender, Recipients: []string{"a@dest.example"}}, []byte(originalMsg))
		if err != nil {
			t.Fatal(err)
		}
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := q.Next(nctx)
		cancel()
		if err != nil || b.MsgID != id {
			t.Fatalf("Next: %v, %v", b, err)
		}
		before := q.Stats().Messages
		if err := q.Complete(ctx, b, []queue.Result{{Index: 0, Outcome: queue.Bounced, Code: 550, Enhanced: "5.1.1", Reply: "no such user"}}); err != nil {
			t.Fatal(err)
		}
		// The bounced message is gone; the DSN (if any) is in the same commit.
		want := before - 1
		if tc.wantDSN {
			want++
		}
		if got := q.Stats().Messages; got != want {
			t.Fatalf("sender %s: %d messages after the bounce, want %d", tc.sender, got, want)
		}
		if !tc.wantDSN {
			continue
		}
		nctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		d, err := q.Next(nctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if d.Envelope.From != "" || d.Envelope.Source != "dsn" || len(d.Rcpts) != 1 || d.Rcpts[0].Addr != tc.sender {
			t.Fatalf("DSN envelope %+v rcpts %+v", d.Envelope, d.Rcpts)
		}
		body, err := q.Body(d.MsgID)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := bytes.Cut(body, []byte("\r\n\r\n"))
		if !bytes.HasPrefix(head, []byte("Received: by mta.example.org (Petrel) id ")) {
			t.Errorf("DSN does not start with ingest's Received:\n%s", head)
		}
		if !bytes.Contains(head, []byte("X-Test-Generated: yes")) || !bytes.Contains(head, []byte("Content-Type: multipart/report")) {
			t.Errorf("DSN not prepared as generated mail:\n%s", head)
		}
		q.Complete(ctx, d, []queue.Result{{Index: 0, Outcome: queue.Delivered, Code: 250}})
	}
	if pol.prepared != 1 {
		t.Errorf("policy prepared %d DSNs, want 1", pol.prepared)
	}
}
