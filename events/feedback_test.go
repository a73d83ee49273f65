package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/policy/suppress"
)

func TestFeedbackReports(t *testing.T) {
	w := newWorld(t, testBounceConfig(), nil)
	ctx := context.Background()
	forger := bounce.VERP{Domain: w.bc.Domain, Secret: []byte("not-our-secret")}

	type want struct {
		event, rcpt, reason string
		suppressedIn        []string // streams where rcpt must be suppressed
		notSuppressedIn     []string
		forged              float64
	}
	tests := []struct {
		name   string
		stream string
		rcpts  []string
		// report builds the envelope recipient and raw report for message id.
		report func(id string) (rcpt string, raw []byte)
		want   want
	}{
		{
			name: "hard DSN to per-recipient VERP suppresses that recipient", stream: "marketing",
			rcpts: []string{"alice@example.test", "bob@example.test"},
			report: func(id string) (string, []byte) {
				rp := w.verp.Encode(id, 1)
				return rp, dsn(rp, "bob@example.test", "failed", "5.1.1", "550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown in local recipient table")
			},
			want: want{event: "bounced", rcpt: "bob@example.test", reason: "userunknown",
				suppressedIn: []string{"marketing"}, notSuppressedIn: []string{"transactional"}},
		},
		{
			name: "message-only VERP matches the reported recipient", stream: "transactional",
			rcpts: []string{"carl@example.test", "dora@example.test"},
			report: func(id string) (string, []byte) {
				rp := w.verp.Encode(id, bounce.AnyRecipient)
				return rp, dsn(rp, "DORA@example.test", "failed", "5.1.1", "550 5.1.1 user unknown")
			},
			want: want{event: "bounced", rcpt: "dora@example.test", reason: "userunknown", suppressedIn: []string{"transactional"}},
		},
		{
			name: "delayed DSN is a deferred event only", stream: "marketing",
			rcpts: []string{"erin@example.test"},
			report: func(id string) (string, []byte) {
				rp := w.verp.Encode(id, 0)
				return rp, dsn(rp, "erin@example.test", "delayed", "4.2.2", "452 4.2.2 Mailbox full")
			},
			want: want{event: "deferred", rcpt: "erin@example.test", notSuppressedIn: []string{"marketing"}},
		},
		{
			name: "forged token is ignored and counted", stream: "marketing",
			rcpts: []string{"fred@example.test"},
			report: func(id string) (string, []byte) {
				rp := forger.Encode(id, 0)
				return rp, dsn(rp, "fred@example.test", "failed", "5.1.1", "550 5.1.1 user unknown")
			},
			want: want{rcpt: "fred@example.test", notSuppressedIn: []string{"marketing"}, forged: 1},
		},
		{
			name: "ARF complaint suppresses in marketing only", stream: "transactional",
			rcpts: []string{"gina@example.test"},
			report: func(id string) (string, []byte) {
				return "fbl@petrel.test", arf("fbl@petrel.test", w.verp.Encode(id, 0), "gina@example.test")
			},
			want: want{event: "complained", rcpt: "gina@example.test", reason: "feedback",
				suppressedIn: []string{"marketing"}, notSuppressedIn: []string{"transactional"}, forged: 1},
		},
		{
			name: "ARF opt-out unsubscribes in the message's stream, no complaint", stream: "marketing",
			rcpts: []string{"jill@example.test"},
			report: func(id string) (string, []byte) {
				return "fbl@petrel.test", arfType("opt-out", "fbl@petrel.test", w.verp.Encode(id, 0), "jill@example.test")
			},
			want: want{event: "unsubscribed", rcpt: "jill@example.test", reason: "unsubscribe",
				suppressedIn: []string{"marketing"}, notSuppressedIn: []string{"transactional"}, forged: 1},
		},
		{
			name: "auto-reply is recorded, not a bounce", stream: "marketing",
			rcpts: []string{"hank@example.test"},
			report: func(id string) (string, []byte) {
				rp := w.verp.Encode(id, 0)
				return rp, autoReply(rp, "hank@example.test")
			},
			want: want{event: "autoreply", rcpt: "hank@example.test", reason: "vacation",
				notSuppressedIn: []string{"marketing"}, forged: 1},
		},
		{
			name: "report for an unknown message is dropped", stream: "marketing",
			rcpts: []string{"ivan@example.test"},
			report: func(string) (string, []byte) {
				rp := w.verp.Encode("00000000000000000000000000", 0)
				return rp, dsn(rp, "ivan@example.test", "failed", "5.1.1", "550 5.1.1 user unknown")
			},
			want: want{rcpt: "ivan@example.test", notSuppressedIn: []string{"marketing"}, forged: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := w.enqueue(tt.stream, tt.rcpts...)
			rcpt, raw := tt.report(id)
			if err := w.svc.Handle(ctx, rcpt, raw); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			var got []string
			for _, typ := range []string{"bounced", "deferred", "complained", "unsubscribed", "autoreply"} {
				for _, ev := range w.events(typ) {
					if ev.MsgID != id {
						continue
					}
					got = append(got, typ)
					if typ != tt.want.event || ev.Recipient != tt.want.rcpt || ev.Stream != tt.stream ||
						ev.Campaign != "c1" || (tt.want.reason != "" && ev.Reason != tt.want.reason) {
						t.Errorf("event %+v, want type %q rcpt %q reason %q stream %q", ev, tt.want.event, tt.want.rcpt, tt.want.reason, tt.stream)
					}
				}
			}
			if tt.want.event == "" && len(got) > 0 || tt.want.event != "" && len(got) != 1 {
				t.Errorf("events %v, want exactly one %q", got, tt.want.event)
			}
			for _, s := range tt.want.suppressedIn {
				if !w.suppressed(s, tt.want.rcpt) {
					t.Errorf("%s not suppressed in %s", tt.want.rcpt, s)
				}
			}
			for _, s := range tt.want.notSuppressedIn {
				if w.suppressed(s, tt.want.rcpt) {
					t.Errorf("%s suppressed in %s", tt.want.rcpt, s)
				}
			}
			for _, other := range tt.rcpts {
				if other != tt.want.rcpt && (w.suppressed("marketing", other) || w.suppressed("transactional", other)) {
					t.Errorf("bystander %s suppressed", other)
				}
			}
			if f := w.metric("petrel_bounce_forged_total"); f != tt.want.forged {
				t.Errorf("petrel_bounce_forged_total = %v, want %v", f, tt.want.forged)
			}
		})
	}
}

// FuzzHandle feeds arbitrary bytes to the feedback handler with a real
// queue and policy engine behind it: it must never panic, and a report
// without a valid credential for a message must suppress no one. The
// credentials are what identify accepts: a VERP token that verifies under
// the bounce secret, or (feedback reports only) the message's ID, which
// carries 64 random bits. Every new suppression must be a recipient of a
// message whose credential the input carries; the seeds carry real ones
// (so the fuzzer reaches the suppressing paths) next to forged ones.
func FuzzHandle(f *testing.F) {
	bc := testBounceConfig()
	w := newWorld(f, bc, nil)
	forger := bounce.VERP{Domain: bc.Domain, Secret: []byte("not-our-secret")}
	msgs := map[string][]string{ // message ID -> recipients
		w.enqueue("marketing", "alice@example.test", "bob@example.test"): {"alice@example.test", "bob@example.test"},
		w.enqueue("transactional", "carl@example.test"):                  {"carl@example.test"},
	}
	for id := range msgs {
		rp, any := w.verp.Encode(id, 1), w.verp.Encode(id, bounce.AnyRecipient)
		f.Add(rp, dsn(rp, "bob@example.test", "failed", "5.1.1", "550 5.1.1 unknown"))
		f.Add(any, dsn(any, "carl@example.test", "failed", "5.1.1", "550 5.1.1 unknown"))
		f.Add("fbl@petrel.test", arf("fbl@petrel.test", w.verp.Encode(id, 0), "alice@example.test"))
		f.Add("fbl@petrel.test", []byte(strings.Replace(string(arf("fbl@petrel.test", "news@sender.test", "carl@example.test")),
			"Subject: Sale", "X-Petrel-ID: "+id+"\r\nSubject: Sale", 1)))
		f.Add(forger.Encode(id, 0), dsn(forger.Encode(id, 0), "alice@example.test", "failed", "5.1.1", "550 5.1.1 unknown"))
		f.Add(rp, autoReply(rp, "alice@example.test"))
	}
	f.Add("x@"+bc.Domain, dsn("x@"+bc.Domain, "bob@example.test", "failed", "5.1.1", "550 5.1.1 unknown"))
	f.Add("fbl@petrel.test", arf("fbl@petrel.test", "news@sender.test", "alice@example.test"))
	f.Add("a@b", []byte("Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n--x--"))
	f.Add("", []byte{})
	store := w.pol.Suppressions()
	f.Fuzz(func(t *testing.T, rcpt string, raw []byte) {
		before := suppressionSet(t, store)
		if err := w.svc.Handle(context.Background(), rcpt, raw); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		after := suppressionSet(t, store)
		creds := credentials(w.verp, rcpt, raw, msgs)
		for k, e := range after {
			if _, ok := before[k]; ok {
				continue
			}
			allowed := false
			for id := range creds {
				allowed = allowed || slices.Contains(msgs[id], strings.ToLower(e.Address))
			}
			if !allowed {
				t.Errorf("%s suppressed in %s (reason %s, source %s) by a report with no credential for a message to it (credentials: %v)",
					e.Address, e.Stream, e.Reason, e.Source, creds)
			}
			// Start the next input from the same state.
			if _, err := store.Remove(e.Stream, e.Address); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// suppressionSet lists every suppression entry, keyed by stream and
// address.
func suppressionSet(t *testing.T, s *suppress.Store) map[string]suppress.Entry {
	t.Helper()
	set := map[string]suppress.Entry{}
	for after := ""; ; {
		p, err := s.List("", after, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			set[e.Stream+"\x00"+strings.ToLower(e.Address)] = e
		}
		if after = p.Next; after == "" {
			return set
		}
	}
}

var (
	verpAddrRe  = regexp.MustCompile(`(?i)bounces\+[a-z0-9]+@[a-z0-9.-]+`)
	base64RunRe = regexp.MustCompile(`[A-Za-z0-9+/=\r\n]{16,}`)
	foldRe      = regexp.MustCompile(`\r?\n[ \t]+`)
)

// credentials returns the IDs of the known messages that the input names
// in a way identify could accept: a verifying VERP address or the bare
// message ID, found in the raw bytes, in the header-unfolded and
// quoted-printable-decoded text, or in any base64 run (an over-
// approximation: extra credentials only make the check laxer).
func credentials(v bounce.VERP, rcpt string, raw []byte, msgs map[string][]string) map[string]bool {
	texts := []string{rcpt, string(raw)}
	unfolded := foldRe.ReplaceAllString(string(raw), " ")
	texts = append(texts, unfolded)
	if qp, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); len(qp) > 0 || err == nil {
		texts = append(texts, string(qp))
	}
	for _, run := range base64RunRe.FindAll(raw, -1) {
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, run)
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(dec, clean)
		texts = append(texts, string(dec[:n]))
	}
	found := map[string]bool{}
	for _, s := range texts {
		for _, a := range verpAddrRe.FindAllString(s, -1) {
			if id, _, err := v.Decode(a); err == nil && msgs[id] != nil {
				found[id] = true
			}
		}
		for id := range msgs {
			if strings.Contains(strings.ToLower(s), strings.ToLower(id)) {
				found[id] = true
			}
		}
	}
	return found
}
