package audience

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/verify"
)

// cleaningWorld is a loopback DNS server and an MX host for ok.test that
// knows alice and bob and rejects every other mailbox with 550 5.1.1, a
// catch-all MX for catchall.test, and a null MX domain; verifier is a
// real verify.Verifier over it, adapted as petreld adapts it.
func cleaningWorld(t *testing.T) VerifyFunc {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	port, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, mx := range []testnet.MXOptions{
		{Addr: fmt.Sprintf("127.0.0.2:%d", port), Script: testnet.MXScript{OnRcpt: func(rcpt string, _ int) error {
			if l := strings.ToLower(rcpt[:strings.IndexByte(rcpt, '@')]); l == "alice" || l == "bob" {
				return nil
			}
			return testnet.Reply(550, "5.1.1", "user unknown")
		}}},
		{Addr: fmt.Sprintf("127.0.0.3:%d", port)},
	} {
		m, err := testnet.StartMX(mx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
	}
	d.Add("mx.ok.test. 300 IN A 127.0.0.2", "mx.catchall.test. 300 IN A 127.0.0.3",
		"ok.test. 300 IN MX 10 mx.ok.test.", "catchall.test. 300 IN MX 10 mx.catchall.test.", "nullmx.test. 300 IN MX 0 .")
	log := slog.New(slog.DiscardHandler)
	res, err := dns.NewResolver(d.Addr, 2*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	c := config.Default().Verify
	c.ConnectTimeout.Duration, c.CommandTimeout.Duration = 2*time.Second, 2*time.Second
	c.ProviderRate, c.ProviderBurst = 10000, 1000
	v, err := verify.New(verify.Options{Config: c, Resolver: res, SMTPPort: port, Hostname: "verifier.petrel.test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return func(ctx context.Context, addrs []string) []Verification {
		rs := v.VerifyMany(ctx, addrs, nil)
		out := make([]Verification, len(rs))
		for i, r := range rs {
			verdict := map[verify.Verdict]string{verify.Deliverable: VerdictValid, verify.Risky: VerdictRisky, verify.Undeliverable: VerdictInvalid}[r.Verdict]
			out[i] = Verification{Verdict: cmpOr(verdict, VerdictUnknown), Reasons: r.Reasons, Suggestion: r.Suggestion}
		}
		return out
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestListCleaning: a cleaning job over a segment verifies each active
// contact through verify against real loopback DNS and MX hosts, stores
// the verdict and time, tags invalid and risky contacts (a segment then
// excludes them), reports the counts, leaves statuses alone, and a
// re-run with older_than skips contacts verified since. It resumes
// after a stop. Both backends.
func TestListCleaning(t *testing.T) {
	verifier := cleaningWorld(t)
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := s.CreateAudience(ctx, Audience{Name: "news"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"alice@ok.test": VerdictValid, "bob@ok.test": VerdictValid, "carol@ok.test": VerdictInvalid, "dave@ok.test": VerdictInvalid,
			"x@nullmx.test": VerdictInvalid, "y@catchall.test": VerdictRisky,
		}
		ids := map[string]int64{}
		for addr := range want {
			c, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: addr, Tags: []string{"list"}})
			if err != nil {
				t.Fatal(err)
			}
			ids[addr] = c.ID
		}
		// Outside the segment, and an unsubscribed contact: not verified.
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "zed@ok.test"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "gone@ok.test", Tags: []string{"list"}, Status: Unsubscribed}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(Handler(s, HandlerOptions{Context: ctx, Verify: verifier}))
		defer srv.Close()
		c := apiClient{t, srv.URL}
		ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
		apiError(t, c.json("POST", ap+"/cleanings", `{"segment":"\"list\" in tagz"}`, 400, nil), "invalid_expression")
		apiError(t, c.json("POST", ap+"/cleanings", `{"older_than":"soon"}`, 400, nil), "invalid_request")
		var j CleaningJob
		c.json("POST", ap+"/cleanings", `{"segment":"\"list\" in tags"}`, 202, &j)
		waitJob := func(id int64) CleaningJob {
			t.Helper()
			deadline := time.Now().Add(60 * time.Second)
			for {
				var j CleaningJob
				c.json("GET", fmt.Sprintf("%s/cleanings/%d", ap, id), nil, 200, &j)
				if j.State == ImportDone || j.State == ImportFailed || time.Now().After(deadline) {
					return j
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		j = waitJob(j.ID)
		if j.State != ImportDone || j.Checked != 6 || j.Skipped != 1 || j.Valid != 2 || j.Invalid != 3 || j.Risky != 1 || j.Unknown != 0 {
			t.Fatalf("cleaning job %+v", j)
		}
		for addr, verdict := range want {
			var v Verification
			c.json("GET", fmt.Sprintf("%s/contacts/%d/verification", ap, ids[addr]), nil, 200, &v)
			if v.Verdict != verdict || v.CheckedAt.IsZero() {
				t.Errorf("%s: verification %+v, want %s", addr, v, verdict)
			}
			ct, _ := s.Contact(ctx, a.ID, ids[addr])
			if ct.Status != Active {
				t.Errorf("%s: status %s changed by cleaning", addr, ct.Status)
			}
			wantTag := map[string]string{VerdictInvalid: TagInvalid, VerdictRisky: TagRisky}[verdict]
			if has := slices.Contains(ct.Tags, wantTag); wantTag != "" && !has {
				t.Errorf("%s: tags %v, want %s", addr, ct.Tags, wantTag)
			}
		}
		if n, err := s.Count(ctx, a.ID, `"list" in tags && !("verify:invalid" in tags) && status == "active"`); err != nil || n != 3 {
			t.Errorf("segment excluding invalid: %d %v, want 3", n, err)
		}
		// Re-verification of contacts older than a day: none is.
		var again CleaningJob
		c.json("POST", ap+"/cleanings", `{"older_than":"24h"}`, 202, &again)
		if again = waitJob(again.ID); again.State != ImportDone || again.Checked != 1 || again.Skipped != 7 {
			t.Errorf("re-verification job %+v, want only zed checked", again)
		}

		// A job stopped after its first page resumes and ends the same.
		s.opts.afterBatch = nil
		stopped, err := s.CreateCleaning(ctx, a.ID, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var many []ContactInput
		for i := range 150 {
			many = append(many, ContactInput{Email: fmt.Sprintf("u%d@ok.test", i)})
		}
		if _, err := s.UpsertContacts(ctx, a.ID, many, DupUpdate, TagsAdd); err != nil {
			t.Fatal(err)
		}
		stop, halt := context.WithCancel(ctx)
		s.opts.afterBatch = halt
		if err := s.RunCleaning(stop, stopped.ID, verifier); err == nil {
			t.Fatal("stopped cleaning returned nil")
		}
		s.opts.afterBatch = nil
		if mid, _ := s.Cleaning(ctx, a.ID, stopped.ID); mid.State != ImportRunning || mid.Checked+mid.Skipped != cleaningPage {
			t.Fatalf("after the stop %+v", mid)
		}
		if err := s.RunCleaning(ctx, stopped.ID, verifier); err != nil {
			t.Fatal(err)
		}
		end, _ := s.Cleaning(ctx, a.ID, stopped.ID)
		if end.State != ImportDone || end.Checked != 157 || end.Skipped != 1 || end.Invalid != 154 {
			t.Errorf("resumed cleaning %+v, want 157 checked (all but the unsubscribed), 154 invalid (3 + zed + 150)", end)
		}
	})
}
