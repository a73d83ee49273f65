package verify

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// limitedMX starts, on the fixture's port at ip, an MX host serving domain
// that allows maxRcpt recipients per transaction (go-smtp's real 452 4.5.3
// beyond it) and answers RCPT with onRcpt.
func (f *fixture) limitedMX(t *testing.T, ip, domain string, maxRcpt int, onRcpt func(string, int) error) {
	t.Helper()
	m, err := testnet.StartMX(testnet.MXOptions{Addr: fmt.Sprintf("%s:%d", ip, f.port), MaxRecipients: maxRcpt,
		Script: testnet.MXScript{OnRcpt: onRcpt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f.dns.Add("mx."+domain+". 300 IN A "+ip, domain+". 300 IN MX 10 mx."+domain+".")
}

// TestRcptLimitNewTransaction: an MX that takes 20 recipients per
// transaction. Every address after the 20th used to come back risky /
// mailbox_full (and was cached so); now the rest are asked in a new
// transaction and every verdict is the mailbox's own.
func TestRcptLimitNewTransaction(t *testing.T) {
	f := newFixture(t)
	f.limitedMX(t, "127.0.0.9", "limited.test", 20, func(rcpt string, _ int) error {
		var n int
		if _, err := fmt.Sscanf(rcpt, "u%d@", &n); err != nil || n%3 == 0 {
			return testnet.Reply(550, "5.1.1", "no such user")
		}
		return nil
	})
	c := testConfig()
	c.RcptPerSession = 50
	v := f.verifier(t, c, "")
	var addrs []string
	for i := range 60 {
		addrs = append(addrs, fmt.Sprintf("u%d@limited.test", i))
	}
	res := v.VerifyMany(context.Background(), addrs, nil)
	for i, r := range res {
		want := Deliverable
		if i%3 == 0 {
			want = Undeliverable
		}
		if r.Verdict != want || r.Stages.SMTP.Code == 452 {
			t.Errorf("%s: %s %v (SMTP %d %s), want %s", r.Address, r.Verdict, r.Reasons, r.Stages.SMTP.Code, r.Stages.SMTP.Enhanced, want)
		}
	}
}

// TestTransientVerdictNotCached: a 452 4.2.2 (full today) gives risky /
// mailbox_full, but that answer is not cached: the next check asks again
// and sees the mailbox accept.
func TestTransientVerdictNotCached(t *testing.T) {
	f := newFixture(t)
	f.limitedMX(t, "127.0.0.9", "transient.test", 0, func(rcpt string, attempt int) error {
		switch {
		case !strings.HasPrefix(rcpt, "later@"):
			return testnet.Reply(550, "5.1.1", "no such user")
		case attempt == 1:
			return testnet.Reply(452, "4.2.2", "mailbox full, try later")
		}
		return nil
	})
	v := f.verifier(t, testConfig(), "")
	ctx := context.Background()
	if r := v.Verify(ctx, "later@transient.test"); r.Verdict != Risky || r.Reasons[0] != RMailboxFull {
		t.Fatalf("first: %s %v", r.Verdict, r.Reasons)
	}
	if r := v.Verify(ctx, "later@transient.test"); r.Cached || r.Verdict != Deliverable {
		t.Errorf("second: %s %v cached=%v, want a fresh deliverable", r.Verdict, r.Reasons, r.Cached)
	}
}

// TestCatchAllOncePerDomain: one domain's addresses split over concurrent
// sessions (10 per session, 6 at once) get one catch-all test, not one per
// session.
func TestCatchAllOncePerDomain(t *testing.T) {
	f := newFixture(t)
	var tests atomic.Int32
	f.limitedMX(t, "127.0.0.9", "split.test", 0, func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "petrel-verify-") {
			if strings.HasSuffix(rcpt, "@split.test") {
				tests.Add(1)
			}
			return testnet.Reply(550, "5.1.1", "no such user")
		}
		time.Sleep(5 * time.Millisecond) // so that the sessions overlap
		return nil
	})
	// Five more domains on the same host, so that a bulk job runs six
	// sessions at once.
	for i := range 5 {
		f.dns.Add(fmt.Sprintf("other%d.test. 300 IN MX 10 mx.split.test.", i))
	}
	c := testConfig()
	c.RcptPerSession = 10
	c.BulkDomains = 6
	v := f.verifier(t, c, "")
	var addrs []string
	for i := range 60 {
		addrs = append(addrs, fmt.Sprintf("p%d@split.test", i))
	}
	for i := range 5 {
		addrs = append(addrs, fmt.Sprintf("p@other%d.test", i))
	}
	res := v.VerifyMany(context.Background(), addrs, nil)
	if n := tests.Load(); n != 1 {
		t.Errorf("%d catch-all tests for one domain, want 1", n)
	}
	for _, r := range res {
		if r.Verdict != Deliverable || r.Stages.SMTP.CatchAll == nil || *r.Stages.SMTP.CatchAll {
			t.Errorf("%s: %s catch-all %v", r.Address, r.Verdict, r.Stages.SMTP.CatchAll)
		}
	}
}
