package events

import (
	"context"
	"testing"

	"github.com/petrel-mta/petrel/bounce"
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
// without a valid token must never suppress anyone.
func FuzzHandle(f *testing.F) {
	bc := testBounceConfig()
	v := bounce.VERP{Domain: bc.Domain, Secret: []byte(bc.Secret)}
	rp := v.Encode("0c2l8q1ju4a1e1v7f3k0g5d2hs", 0)
	f.Add("x@"+bc.Domain, dsn(rp, "bob@example.test", "failed", "5.1.1", "550 5.1.1 unknown"))
	f.Add("fbl@petrel.test", arf("fbl@petrel.test", rp, "gina@example.test"))
	f.Add(rp, autoReply(rp, "hank@example.test"))
	f.Add(rp, []byte("Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n--x--"))
	f.Add("", []byte{})
	w := newWorld(f, bc, nil)
	f.Fuzz(func(t *testing.T, rcpt string, raw []byte) {
		if err := w.svc.Handle(context.Background(), rcpt, raw); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	})
}
