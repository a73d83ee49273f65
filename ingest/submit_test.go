package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mta/petrel/policy/dkim"
	"github.com/petrel-mta/petrel/queue"
)

// hops returns n Received fields followed by m Delivered-To fields.
func hops(n, m int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "Received: from hop%d.example.net ([192.0.2.%d])\r\n\tby relay.example.net; Mon, 02 Jan 2006 15:04:05 -0700\r\n", i, i%250+1)
	}
	for range m {
		b.WriteString("Delivered-To: bob@example.com\r\n")
	}
	return b.String()
}

// TestMailLoop: over real SMTP, a message with more Received plus
// Delivered-To fields than smtp.hop_count_limit (default 50) gets 554
// 5.4.6 at the end of DATA and is not queued; at the limit it is
// accepted. Over HTTP the same message gets 422 mail_loop.
func TestMailLoop(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	tests := []struct {
		name        string
		recv, deliv int
		code        int
		want        string
	}{
		{"50 Received accepted", 50, 0, 250, "queued as"},
		{"51 Received refused", 51, 0, 554, "5.4.6 Routing loop detected"},
		{"Delivered-To counts", 49, 2, 554, "5.4.6"},
		{"no trace", 0, 0, 250, "queued as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.q.Stats().Messages
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			v.cmd("MAIL FROM:<alice@example.org>", 250, "")
			v.cmd("RCPT TO:<bob@example.com>", 250, "")
			v.data(hops(tt.recv, tt.deliv)+simpleMsg, tt.code, tt.want)
			queued := e.q.Stats().Messages - before
			if (tt.code == 250) != (queued == 1) {
				t.Errorf("%d messages queued after a %d reply", queued, tt.code)
			}
		})
	}

	h := startHTTP(t, nil)
	for _, tt := range []struct {
		recv   int
		status int
		code   string
	}{{51, 422, "mail_loop"}, {50, 202, ""}} {
		status, body := h.do(t, "POST", "/api/v1/messages", "app-key",
			mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Raw: hops(tt.recv, 0) + simpleMsg}))
		if status != tt.status || !strings.Contains(string(body), tt.code) {
			t.Errorf("%d Received over HTTP: %d %s, want %d %s", tt.recv, status, body, tt.status, tt.code)
		}
	}
}

// TestNULRefused: a NUL byte in the header or the body is refused with
// 554 5.6.0 over a real SMTP socket (nothing queued, the session goes on),
// and with 422 nul_byte over HTTP.
func TestNULRefused(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	for _, msg := range []string{
		"From: alice@example.org\r\nSubject: a\x00b\r\n\r\nbody\r\n",
		"From: alice@example.org\r\nSubject: ab\r\n\r\nbo\x00dy\r\n",
	} {
		v.cmd("MAIL FROM:<alice@example.org>", 250, "")
		v.cmd("RCPT TO:<bob@example.com>", 250, "")
		v.data(msg, 554, "5.6.0")
	}
	if n := e.q.Stats().Messages; n != 0 {
		t.Errorf("%d messages queued", n)
	}
	// The session is usable afterwards.
	v.cmd("MAIL FROM:<alice@example.org>", 250, "")
	v.cmd("RCPT TO:<bob@example.com>", 250, "")
	v.data(simpleMsg, 250, "queued as")

	h := startHTTP(t, nil)
	status, body := h.do(t, "POST", "/api/v1/messages", "app-key",
		mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Raw: "Subject: x\r\n\r\nnul \x00 here\r\n"}))
	if status != 422 || !strings.Contains(string(body), `"nul_byte"`) {
		t.Errorf("NUL over HTTP: %d %s", status, body)
	}
}

// TestBccNeverQueued: Bcc given in the HTTP API's headers is added to the
// envelope and never written into the message; a raw message's Bcc fields
// are removed (its recipients are the request's "to" only).
func TestBccNeverQueued(t *testing.T) {
	e := startHTTP(t, nil)
	tests := []struct {
		name  string
		req   SendRequest
		rcpts []string
	}{
		{"headers", SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Subject: "s", Text: "hi",
			Headers: map[string]string{"bcc": "Hidden <hidden@example.net>, other@example.net", "X-Keep": "1"}},
			[]string{"b@example.com", "hidden@example.net", "other@example.net"}},
		{"headers duplicate of to", SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Text: "hi",
			Headers: map[string]string{"Bcc": "B@example.com"}}, []string{"b@example.com"}},
		{"raw", SendRequest{From: "a@example.org", To: []string{"b@example.com"},
			Raw: "From: a@example.org\r\nTo: b@example.com\r\nBcc: hidden@example.net\r\nBCC: x@example.net,\r\n y@example.net\r\nSubject: s\r\n\r\nbody\r\n"},
			[]string{"b@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(t, "POST", "/api/v1/messages", "app-key", mustJSON(tt.req))
			if status != 202 {
				t.Fatalf("status %d: %s", status, body)
			}
			var resp SendResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			mi, err := e.q.Message(resp.ID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range mi.Recipients {
				got = append(got, strings.ToLower(r.Addr))
			}
			if strings.Join(got, ",") != strings.Join(tt.rcpts, ",") {
				t.Errorf("envelope %v, want %v", got, tt.rcpts)
			}
			stored, err := e.q.Body(resp.ID)
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(bytes.NewReader(stored))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Header["Bcc"]) > 0 || bytes.Contains(bytes.ToLower(stored), []byte("bcc:")) || bytes.Contains(stored, []byte("hidden@")) {
				t.Errorf("Bcc in the queued message:\n%s", stored)
			}
			if tt.req.Headers["X-Keep"] != "" && m.Header.Get("X-Keep") != "1" {
				t.Errorf("other header lost:\n%s", stored)
			}
		})
	}
	status, body := e.do(t, "POST", "/api/v1/messages", "app-key", mustJSON(SendRequest{From: "a@example.org",
		To: []string{"b@example.com"}, Text: "hi", Headers: map[string]string{"Bcc": "not an address"}}))
	if status != 400 || !strings.Contains(string(body), "invalid_address") {
		t.Errorf("bad Bcc: %d %s", status, body)
	}
}

// countingSpool counts the commits made through it to a real queue.
type countingSpool struct {
	*queue.Queue
	batches atomic.Int64
}

func (c *countingSpool) EnqueueBatch(ctx context.Context, msgs []queue.NewMessage) ([]string, error) {
	c.batches.Add(1)
	return c.Queue.EnqueueBatch(ctx, msgs)
}

// TestSubmitBatch: SubmitBatch commits the accepted messages in one
// EnqueueBatch (the queue test shows that is one synced commit), gives
// refused messages their Receipt.Err without stopping the others, and
// queues nothing when the commit fails.
func TestSubmitBatch(t *testing.T) {
	sp := &countingSpool{Queue: openQueue(t)}
	pol := &testPolicy{suppressed: map[string]string{"marketing gone@example.com": "unsubscribe"}}
	s := NewSubmitter(SubmitOptions{Hostname: "mx.petrel.test", Spool: sp, Policy: pol, Logger: slog.New(slog.DiscardHandler)})
	var subs []Submission
	for i := range 10 {
		to := fmt.Sprintf("c%d@example.com", i)
		if i == 3 {
			to = "gone@example.com"
		}
		subs = append(subs, Submission{
			Envelope: Envelope{From: "news@shop.test", Rcpts: []string{to}, Stream: "marketing", Campaign: "spring", Source: "campaign"},
			Body:     []byte(fmt.Sprintf("From: news@shop.test\r\nTo: %s\r\nSubject: %d\r\n\r\nHello %d\r\n", to, i, i)),
		})
	}
	subs[7].Body = []byte("not a header\r\n\r\nbody\r\n")
	rcs, err := s.SubmitBatch(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	if n := sp.batches.Load(); n != 1 {
		t.Errorf("%d commits for one batch, want 1", n)
	}
	for i, rc := range rcs {
		switch i {
		case 3:
			if !errors.Is(rc.Err, ErrAllSuppressed) || rc.ID != "" || rc.Suppressed["gone@example.com"] != "unsubscribe" {
				t.Errorf("suppressed message: %+v", rc)
			}
		case 7:
			if !errors.Is(rc.Err, ErrBadHeader) || rc.ID != "" {
				t.Errorf("bad message: %+v", rc)
			}
		default:
			if rc.Err != nil || rc.ID == "" {
				t.Fatalf("message %d: %+v", i, rc)
			}
			body, err := sp.Body(rc.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("Subject: %d\r\n\r\nHello %d\r\n", i, i)
			if !bytes.HasPrefix(body, []byte("X-Test-Prepared: marketing\r\nReceived: ")) || !bytes.HasSuffix(body, []byte(want)) {
				t.Errorf("message %d stored as\n%s", i, body)
			}
			mi, _ := sp.Message(rc.ID)
			if mi.Campaign != "spring" || mi.Source != "campaign" || mi.Stream != "marketing" {
				t.Errorf("message %d: %+v", i, mi)
			}
		}
	}
	if n := sp.Stats().Messages; n != 8 {
		t.Errorf("%d messages queued, want 8", n)
	}

	// A failing commit queues none and says so.
	f := NewSubmitter(SubmitOptions{Spool: failingSpool{}, Logger: slog.New(slog.DiscardHandler)})
	var temp *TemporaryError
	if _, err := f.SubmitBatch(context.Background(), subs[:2]); !errors.As(err, &temp) {
		t.Errorf("failing commit: %v, want a TemporaryError", err)
	}
}

// TestOneParsePerMessage: SMTP and HTTP each parse a message's header
// once (the Submitter's counter), with the real policy engine adding
// List-Unsubscribe and DKIM-signing over the index; the signature of the
// queued bytes verifies and covers List-Unsubscribe.
func TestOneParsePerMessage(t *testing.T) {
	pol := realPolicy(t)
	q := openQueue(t)
	sub := NewSubmitter(SubmitOptions{Hostname: "mx.petrel.test", Spool: q, Policy: pol, Logger: slog.New(slog.DiscardHandler)})
	cfg := testSMTPConfig()
	cfg.MaxMessageSize = 1 << 20
	e := startSMTP(t, cfg, func(o *Options) { o.Submitter = sub })
	h := startHTTP(t, func(o *HTTPOptions) { o.Submitter = sub; o.MaxMessageSize = 1 << 20 })

	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	v.cmd("MAIL FROM:<news@shop.test>", 250, "")
	v.cmd("RCPT TO:<bob@example.com>", 250, "")
	ids := []string{queuedID(t, v.data(string(copiesMsg()), 250, "queued as"))}
	status, body := h.do(t, "POST", "/api/v1/messages", "app-key", mustJSON(SendRequest{From: "news@shop.test", To: []string{"bob@example.com"}, Raw: string(copiesMsg())}))
	if status != 202 {
		t.Fatalf("HTTP: %d %s", status, body)
	}
	var resp SendResponse
	json.Unmarshal(body, &resp)
	ids = append(ids, resp.ID)
	if n := sub.parses.Load(); n != 2 {
		t.Errorf("%d header parses for 2 messages, want 2", n)
	}

	keys := pol.Keyring().Keys("shop.test")
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	txt, err := dkim.TXTValue(keys[0].Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		stored, err := q.Body(id)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(stored), &msgdkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) { return []string{txt}, nil },
		})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("DKIM verification of %s: %v %+v\n%.600s", id, err, vs, stored)
		}
		covered := strings.ToLower(strings.Join(vs[0].HeaderKeys, ":"))
		for _, want := range []string{"list-unsubscribe", "from", "subject"} {
			if !strings.Contains(covered, want) {
				t.Errorf("signature does not cover %s: h=%s", want, covered)
			}
		}
		if bytes.Contains(stored, []byte(StreamHeader)) {
			t.Errorf("%s still in the queued message", StreamHeader)
		}
	}
}

// countingPolicy counts suppression checks per address.
type countingPolicy struct {
	*testPolicy
	mu     sync.Mutex
	checks map[string]int
}

func (p *countingPolicy) Suppressed(stream, addr string) (string, bool) {
	p.mu.Lock()
	p.checks[strings.ToLower(addr)]++
	p.mu.Unlock()
	return p.testPolicy.Suppressed(stream, addr)
}

// TestSuppressionCheckedOnce: over real SMTP a recipient is checked for
// suppression once (at RCPT, which answers early), not again when the
// message is accepted; only a stream change by X-Petrel-Stream makes a
// second check in the new stream. Over HTTP each recipient is checked
// once.
func TestSuppressionCheckedOnce(t *testing.T) {
	pol := &countingPolicy{testPolicy: &testPolicy{suppressed: map[string]string{"marketing carol@example.com": "unsubscribe"}}, checks: map[string]int{}}
	e := startSMTP(t, testSMTPConfig(), func(o *Options) { o.Policy = pol })
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	v.cmd("MAIL FROM:<alice@example.org>", 250, "")
	v.cmd("RCPT TO:<bob@example.com>", 250, "")
	v.data(simpleMsg, 250, "queued as")
	v.cmd("MAIL FROM:<alice@example.org>", 250, "")
	v.cmd("RCPT TO:<carol@example.com>", 250, "")
	v.cmd("RCPT TO:<dave@example.com>", 250, "")
	v.data(StreamHeader+": marketing\r\n"+simpleMsg, 250, "queued as")
	want := map[string]int{"bob@example.com": 1, "carol@example.com": 2, "dave@example.com": 2}
	for a, n := range want {
		if pol.checks[a] != n {
			t.Errorf("%s checked %d times, want %d (%v)", a, pol.checks[a], n, pol.checks)
		}
	}

	h := startHTTP(t, func(o *HTTPOptions) { o.Policy = pol })
	status, body := h.do(t, "POST", "/api/v1/messages", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"erin@example.com"}, Text: "hi"}))
	if status != 202 || pol.checks["erin@example.com"] != 1 {
		t.Errorf("HTTP: %d %s, %d checks", status, body, pol.checks["erin@example.com"])
	}
}

// TestRepeatIdempotencyKeyBeforePolicy: a message resubmitted with its
// idempotency key (a campaign page after a crash) answers the first
// message's id even when its recipient was suppressed in between: the
// repeat is answered from the spool before policy runs, so a message that
// was sent is never counted as skipped, and nothing is stored twice.
func TestRepeatIdempotencyKeyBeforePolicy(t *testing.T) {
	q := openQueue(t)
	pol := &testPolicy{suppressed: map[string]string{}}
	s := NewSubmitter(SubmitOptions{Hostname: "petrel.test", Spool: q, Policy: pol, Logger: slog.New(slog.DiscardHandler)})
	env := Envelope{From: "news@shop.test", Rcpts: []string{"ann@example.com"}, Stream: "marketing", Source: "campaign",
		IdempotencyKey: "campaign:c1:7"}
	body := []byte("From: news@shop.test\r\nTo: ann@example.com\r\nSubject: s\r\n\r\nhi\r\n")
	rcs, err := s.SubmitBatch(context.Background(), []Submission{{Envelope: env, Body: body}})
	if err != nil || rcs[0].Err != nil || rcs[0].ID == "" {
		t.Fatalf("first: %+v %v", rcs, err)
	}
	pol.suppressed["marketing ann@example.com"] = "unsubscribe"
	again, err := s.SubmitBatch(context.Background(), []Submission{{Envelope: env, Body: body}})
	if err != nil || again[0].Err != nil || again[0].ID != rcs[0].ID {
		t.Fatalf("repeat: %+v %v, want id %s and no error", again, err, rcs[0].ID)
	}
	if rc, err := s.Submit(context.Background(), env, body); err != nil || rc.ID != rcs[0].ID {
		t.Fatalf("repeat via Submit: %+v %v", rc, err)
	}
	if st := q.Stats(); st.Messages != 1 {
		t.Fatalf("%d messages stored, want 1", st.Messages)
	}
	env.IdempotencyKey = "campaign:c1:8" // a new key still meets the suppression
	if _, err := s.Submit(context.Background(), env, body); !errors.Is(err, ErrAllSuppressed) {
		t.Fatalf("new key for a suppressed recipient: %v", err)
	}
}
