package verify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/dns"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/shaping"
)

// fixture is a loopback world: a DNS server and scripted MX hosts on
// 127.0.0.N sharing one port.
type fixture struct {
	dns  *testnet.DNS
	port int
	mxs  map[string]*testnet.MX // by IP
}

// Loopback addresses of the scripted MX hosts.
const (
	ipMain     = "127.0.0.2" // knows alice, bob, 用户; scripted local parts; rejects the rest 5.1.1
	ipCatchAll = "127.0.0.3" // accepts everything
	ipTarpit   = "127.0.0.4" // answers EHLO after tarpitDelay
	ipRefused  = "127.0.0.5" // nothing listens
	ipBlocked  = "127.0.0.6" // refuses the session with 554 5.7.1
	ipBulk     = "127.0.0.7" // bulk fixtures: outcome by local part
	ipNoUTF8   = "127.0.0.8" // no SMTPUTF8
)

// tarpitDelay is how long the tarpit MX waits before answering EHLO:
// longer than testConfig's command timeout.
const tarpitDelay = 6 * time.Second

// mainRcpt scripts the main MX host by local part.
func mainRcpt(rcpt string, attempt int) error {
	local := strings.ToLower(rcpt[:strings.LastIndexByte(rcpt, '@')])
	switch local {
	case "alice", "bob", "用户", "admin", "info", "john doe": // go-smtp unquotes local parts
		return nil
	case "full":
		return testnet.Reply(552, "5.2.2", "mailbox full")
	case "full4":
		return testnet.Reply(452, "4.2.2", "mailbox full, try later")
	case "disabled":
		return testnet.Reply(550, "5.2.1", "account disabled")
	case "blocked":
		return testnet.Reply(554, "5.7.1", "Service unavailable; client host blocked using a blocklist")
	case "grey":
		if attempt == 1 {
			return testnet.Reply(450, "4.7.1", "greylisted, try again later")
		}
		return nil
	case "greyforever":
		return testnet.Reply(450, "4.7.1", "greylisted, try again later")
	}
	return testnet.Reply(550, "5.1.1", "user unknown")
}

// bulkOutcome is the bulk MX's rule: u<n> local parts by n%10.
func bulkOutcome(local string) (code int) {
	var n int
	if _, err := fmt.Sscanf(local, "u%d", &n); err != nil {
		return 550
	}
	switch n % 10 {
	case 7, 8:
		return 550
	case 9:
		return 552
	}
	return 250
}

func bulkRcpt(rcpt string, _ int) error {
	local := rcpt[:strings.LastIndexByte(rcpt, '@')]
	switch bulkOutcome(local) {
	case 550:
		return testnet.Reply(550, "5.1.1", "no such user")
	case 552:
		return testnet.Reply(552, "5.2.2", "over quota")
	}
	return nil
}

func newFixture(t testing.TB) *fixture {
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
	f := &fixture{dns: d, port: port, mxs: map[string]*testnet.MX{}}
	start := func(ip string, o testnet.MXOptions) {
		o.Addr = fmt.Sprintf("%s:%d", ip, port)
		m, err := testnet.StartMX(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		f.mxs[ip] = m
	}
	start(ipMain, testnet.MXOptions{Script: testnet.MXScript{OnRcpt: mainRcpt}})
	start(ipCatchAll, testnet.MXOptions{})
	start(ipTarpit, testnet.MXOptions{Script: testnet.MXScript{OnConnect: func(int) error {
		time.Sleep(tarpitDelay)
		return nil
	}}})
	start(ipBlocked, testnet.MXOptions{Script: testnet.MXScript{OnConnect: func(int) error {
		return testnet.Reply(554, "5.7.1", "your IP is on our blocklist")
	}}})
	start(ipBulk, testnet.MXOptions{Script: testnet.MXScript{OnRcpt: bulkRcpt}})
	d.Add(
		"mx.main.test. 300 IN A "+ipMain,
		"mx.catchall.test. 300 IN A "+ipCatchAll,
		"mx.tarpit.test. 300 IN A "+ipTarpit,
		"mx.refused.test. 300 IN A "+ipRefused,
		"mx.blocked.test. 300 IN A "+ipBlocked,
		"ok.test. 300 IN MX 10 mx.main.test.",
		"catchall.test. 300 IN MX 10 mx.catchall.test.",
		"tarpit.test. 300 IN MX 10 mx.tarpit.test.",
		"refused.test. 300 IN MX 10 mx.refused.test.",
		"blockedconn.test. 300 IN MX 10 mx.blocked.test.",
		"nullmx.test. 300 IN MX 0 .",
		"afallback.test. 300 IN A "+ipMain,
		"deadprimary.test. 300 IN MX 10 mx.refused.test.",
		"deadprimary.test. 300 IN MX 20 mx.main.test.",
		"xn--bcher-kva.test. 300 IN MX 10 mx.main.test.",
		"ghostmx.test. 300 IN MX 10 mx.nowhere.test.",
		"txtonly.test. 300 IN TXT \"v=spf1 -all\"",
		"mailinator.com. 300 IN MX 10 mx.main.test.",
		"gmail.com. 300 IN MX 10 mx.main.test.",
		"hotmial.com. 300 IN MX 10 mx.main.test.",
	)
	d.SetRcode("servfail.test.", mdns.RcodeServerFailure)
	d.Drop("slowdns.test.", true)
	return f
}

// testConfig has timeouts short enough for the tarpit case (the tarpit
// answers EHLO after tarpitDelay) yet loose enough for a loaded machine.
func testConfig() config.VerifyConfig {
	c := config.Default().Verify
	c.ConnectTimeout.Duration = 2 * time.Second
	c.CommandTimeout.Duration = 2 * time.Second
	c.GreylistRetries = 1
	c.GreylistDelay.Duration = 20 * time.Millisecond
	c.ProviderRate = 10000
	c.ProviderBurst = 1000
	c.ProviderConns = 8
	return c
}

// verifier builds a Verifier on the fixture. Its resolver gives up after
// one second (the DNS-timeout case waits that long); c's timeouts bound
// SMTP.
func (f *fixture) verifier(t testing.TB, c config.VerifyConfig, dataDir string) *Verifier {
	return f.verifierDNS(t, c, dataDir, time.Second)
}

func (f *fixture) verifierDNS(t testing.TB, c config.VerifyConfig, dataDir string, dnsTimeout time.Duration) *Verifier {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := dns.NewResolver(f.dns.Addr, dnsTimeout, log)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{Config: c, Resolver: res, SMTPPort: f.port, Hostname: "verifier.petrel.test",
		DataDir: dataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, testConfig(), t.TempDir())
	type want struct {
		verdict Verdict
		reason  string // must be Reasons[0]
		smtp    string // SMTP stage status ("" = don't care)
		flags   Flags
		suggest string
	}
	cases := []struct {
		name, addr string
		want       want
	}{
		{"existing user", "alice@ok.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"user unknown 550 5.1.1", "nosuchuser@ok.test", want{Undeliverable, RMailboxNotFound, StatusRejected, Flags{}, ""}},
		{"catch-all", "anyone@catchall.test", want{Risky, RCatchAll, StatusAccepted, Flags{CatchAll: true}, ""}},
		{"mailbox full 552", "full@ok.test", want{Risky, RMailboxFull, StatusRejected, Flags{FullInbox: true}, ""}},
		{"mailbox full 452", "full4@ok.test", want{Risky, RMailboxFull, StatusTemporary, Flags{FullInbox: true}, ""}},
		{"greylist 450 then accept", "grey@ok.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"greylist never lifts", "greyforever@ok.test", want{Unknown, RGreylisted, StatusTemporary, Flags{}, ""}},
		{"blocked 554 at RCPT", "blocked@ok.test", want{Unknown, RProbeBlocked, StatusRejected, Flags{}, ""}},
		{"blocked 554 session", "alice@blockedconn.test", want{Unknown, RProbeBlocked, StatusBlocked, Flags{}, ""}},
		{"disabled account", "disabled@ok.test", want{Undeliverable, RMailboxDisabled, StatusRejected, Flags{Disabled: true}, ""}},
		{"tarpit", "alice@tarpit.test", want{Unknown, RSMTPTimeout, StatusTimeout, Flags{}, ""}},
		{"connection refused", "alice@refused.test", want{Unknown, RSMTPUnreachable, StatusUnreachable, Flags{}, ""}},
		{"null MX", "alice@nullmx.test", want{Undeliverable, RNullMX, StatusSkipped, Flags{}, ""}},
		{"A-record fallback", "alice@afallback.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"NXDOMAIN", "alice@nothing.test", want{Undeliverable, RDomainNotFound, StatusSkipped, Flags{}, ""}},
		{"SERVFAIL", "alice@servfail.test", want{Unknown, RDNSTemporary, StatusSkipped, Flags{}, ""}},
		{"DNS timeout", "alice@slowdns.test", want{Unknown, RDNSTemporary, StatusSkipped, Flags{}, ""}},
		{"MX host without address", "alice@ghostmx.test", want{Undeliverable, RMXUnresolvable, StatusSkipped, Flags{}, ""}},
		{"no MX and no A", "alice@txtonly.test", want{Undeliverable, RNoMailHost, StatusSkipped, Flags{}, ""}},
		{"dead primary, live secondary", "alice@deadprimary.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"IDN domain", "alice@bücher.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"quoted local part", `"john doe"@ok.test`, want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"UTF-8 local part", "用户@ok.test", want{Deliverable, RAccepted, StatusAccepted, Flags{}, ""}},
		{"disposable", "alice@mailinator.com", want{Risky, RAccepted, StatusAccepted, Flags{Disposable: true}, ""}},
		{"role", "admin@ok.test", want{Risky, RAccepted, StatusAccepted, Flags{Role: true}, ""}},
		{"free provider", "alice@gmail.com", want{Deliverable, RAccepted, StatusAccepted, Flags{FreeProvider: true}, ""}},
		{"typo, domain does not exist", "alice@gmial.com", want{Undeliverable, RDomainNotFound, StatusSkipped, Flags{FreeProvider: true}, "gmail.com"}},
		{"typo, domain has MX", "alice@hotmial.com", want{Risky, RAccepted, StatusAccepted, Flags{FreeProvider: true}, "hotmail.com"}},
		{"bad syntax", "alice@@ok.test", want{Undeliverable, RInvalidSyntax, "", Flags{}, ""}},
		{"address literal", "alice@[192.0.2.1]", want{Risky, RAddressLiteral, StatusSkipped, Flags{}, ""}},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := v.Verify(ctx, c.addr)
			if r.Verdict != c.want.verdict || len(r.Reasons) == 0 || r.Reasons[0] != c.want.reason {
				t.Fatalf("%s: verdict %s %v, want %s [%s ...]\nstages %+v", c.addr, r.Verdict, r.Reasons, c.want.verdict, c.want.reason, r.Stages)
			}
			if c.want.smtp != "" && r.Stages.SMTP.Status != c.want.smtp {
				t.Errorf("smtp stage %+v, want status %s", r.Stages.SMTP, c.want.smtp)
			}
			if r.Flags != c.want.flags {
				t.Errorf("flags %+v, want %+v", r.Flags, c.want.flags)
			}
			if r.Suggestion != c.want.suggest {
				t.Errorf("suggestion %q, want %q", r.Suggestion, c.want.suggest)
			}
			// Flags that make an accepted address risky are named in Reasons.
			for reason, on := range map[string]bool{RDisposable: c.want.flags.Disposable, RRoleAccount: c.want.flags.Role,
				RPossibleTypo: c.want.suggest != "" && c.want.verdict != Undeliverable} {
				if on != slices.Contains(r.Reasons, reason) {
					t.Errorf("reasons %v: %s expected %v", r.Reasons, reason, on)
				}
			}
		})
	}
}

// TestVerifyStages checks details the verdict table does not: recorded
// stage data, greylist retry count, the same-session catch-all probe, IDN
// normal form, and that no probe ever sends DATA.
func TestVerifyStages(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, testConfig(), t.TempDir())
	ctx := context.Background()

	r := v.Verify(ctx, "grey@ok.test")
	if r.Stages.SMTP.Attempts != 2 || r.Stages.SMTP.Host != "mx.main.test" {
		t.Errorf("greylist: %+v", r.Stages.SMTP)
	}
	r = v.Verify(ctx, "alice@bücher.test")
	if r.Normalized != "alice@xn--bcher-kva.test" || r.Stages.Syntax.Parsed.UnicodeDomain != "bücher.test" {
		t.Errorf("IDN: %q %+v", r.Normalized, r.Stages.Syntax.Parsed)
	}
	r = v.Verify(ctx, "alice@afallback.test")
	if r.Stages.MX.Status != StatusImplicit || len(r.Stages.MX.Hosts) != 1 || r.Stages.MX.Hosts[0].IPs[0].String() != ipMain {
		t.Errorf("implicit MX: %+v", r.Stages.MX)
	}
	r = v.Verify(ctx, "alice@deadprimary.test")
	if len(r.Stages.MX.Hosts) != 2 || r.Stages.MX.Hosts[0].Host != "mx.refused.test" || r.Stages.SMTP.Host != "mx.main.test" {
		t.Errorf("dead primary: %+v / %+v", r.Stages.MX, r.Stages.SMTP)
	}
	r = v.Verify(ctx, "bob@catchall.test")
	if r.Stages.SMTP.CatchAll == nil || !*r.Stages.SMTP.CatchAll {
		t.Errorf("catch-all not recorded: %+v", r.Stages.SMTP)
	}
	for ip, m := range f.mxs {
		if m.Count() != 0 {
			t.Errorf("MX %s received %d messages: a probe sent DATA", ip, m.Count())
		}
	}
	// The catch-all test used a random local part in the same session.
	total, _ := f.mxs[ipCatchAll].Conns()
	if total != 1 {
		t.Errorf("catch-all probe used %d sessions, want 1", total)
	}
	// Cached: a second look does not touch the MX again.
	r = v.Verify(ctx, "bob@catchall.test")
	if total2, _ := f.mxs[ipCatchAll].Conns(); !r.Cached || total2 != 1 {
		t.Errorf("second verify: cached=%v sessions=%d", r.Cached, total2)
	}
	// Quick never connects.
	before, _ := f.mxs[ipMain].Conns()
	q := v.Quick(ctx, "carol@ok.test")
	after, _ := f.mxs[ipMain].Conns()
	if q.Verdict != Unknown || q.Reasons[0] != RSMTPNotChecked || after != before {
		t.Errorf("Quick: %s %v, sessions %d -> %d", q.Verdict, q.Reasons, before, after)
	}
	if q := v.Quick(ctx, "alice@nullmx.test"); q.Verdict != Undeliverable {
		t.Errorf("Quick null MX: %s", q.Verdict)
	}
}

// TestUTF8WithoutSMTPUTF8 checks that a UTF-8 mailbox at an MX host
// without SMTPUTF8 is undeliverable (RFC 6531 3.4) while ASCII ones in
// the same batch are still probed.
func TestUTF8WithoutSMTPUTF8(t *testing.T) {
	f := newFixture(t)
	m, err := testnet.StartMX(testnet.MXOptions{Addr: fmt.Sprintf("%s:%d", ipNoUTF8, f.port), NoSMTPUTF8: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f.dns.Add("mx.ascii.test. 300 IN A "+ipNoUTF8, "ascii.test. 300 IN MX 10 mx.ascii.test.")
	v := f.verifier(t, testConfig(), "")
	rs := v.VerifyMany(context.Background(), []string{"用户@ascii.test", "bob@ascii.test"}, nil)
	if rs[0].Verdict != Undeliverable || rs[0].Reasons[0] != RSMTPUTF8Unsupported {
		t.Errorf("UTF-8: %s %v", rs[0].Verdict, rs[0].Reasons)
	}
	if rs[1].Stages.SMTP.Status != StatusAccepted {
		t.Errorf("ASCII in same batch: %+v", rs[1].Stages.SMTP)
	}
}

// bulkFixture adds 50 domains: 45 on the bulk MX (outcome by local part),
// 3 catch-all, 1 NXDOMAIN, 1 null MX, and returns the address list and the
// bucket counts the fixture rules dictate.
func bulkFixture(f *fixture, perDomain int) ([]string, map[string]int) {
	var addrs []string
	want := map[string]int{"valid": 0, "risky": 0, "invalid": 0}
	for d := 0; d < 50; d++ {
		dom := fmt.Sprintf("bulk%02d.test", d)
		switch {
		case d < 45:
			f.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 mx.%s.", dom, dom), fmt.Sprintf("mx.%s. 300 IN A %s", dom, ipBulk))
		case d < 48:
			f.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 mx.catchall.test.", dom))
		case d == 48: // no records: NXDOMAIN
		default:
			f.dns.Add(dom + ". 300 IN MX 0 .")
		}
		for i := 0; i < perDomain; i++ {
			local := fmt.Sprintf("u%d", i)
			addrs = append(addrs, local+"@"+dom)
			switch {
			case d >= 48:
				want["invalid"]++
			case d >= 45: // catch-all
				want["risky"]++
			default:
				switch bulkOutcome(local) {
				case 250:
					want["valid"]++
				case 550:
					want["invalid"]++
				default:
					want["risky"]++
				}
			}
		}
	}
	return addrs, want
}

func TestBulkJob(t *testing.T) {
	f := newFixture(t)
	addrs, want := bulkFixture(f, 200)
	if len(addrs) != 10000 {
		t.Fatalf("fixture has %d addresses", len(addrs))
	}
	dir := t.TempDir()
	// Generous timeouts: this test is about counts, and a loaded machine
	// (or -race) must not turn answers into timeouts.
	c := testConfig()
	c.CommandTimeout.Duration = 30 * time.Second
	v := f.verifierDNS(t, c, dir, 10*time.Second)
	start := time.Now()
	st, err := v.StartJob(addrs)
	if err != nil {
		t.Fatal(err)
	}
	if !testnet.Wait(60*time.Second, func() bool { s, _ := v.Job(st.ID); return s.State != JobRunning }) {
		s, _ := v.Job(st.ID)
		t.Fatalf("job not finished: %+v", s)
	}
	el := time.Since(start)
	s, _ := v.Job(st.ID)
	t.Logf("bulk: %d addresses over 50 domains in %v = %.0f addresses/s", s.Done, el.Round(time.Millisecond), float64(s.Done)/el.Seconds())
	if s.State != JobDone || s.Done != len(addrs) || !mapsEqual(s.Buckets, want) {
		t.Fatalf("job %+v, want buckets %v", s, want)
	}
	// One session probes many addresses of one domain.
	sessions, _ := f.mxs[ipBulk].Conns()
	if maxSessions := 45 * (200/testConfig().RcptPerSession + 1); sessions > maxSessions {
		t.Errorf("%d sessions for 45 domains x 200 addresses", sessions)
	}
	// Results per bucket, and every index exactly once.
	seen := make([]bool, len(addrs))
	for _, b := range []string{"valid", "risky", "invalid"} {
		n := 0
		if err := v.JobResults(st.ID, b, func(l JobLine) error {
			n++
			if seen[l.Index] || addrs[l.Index] != l.Result.Address || l.Result.Verdict.Bucket() != b {
				return fmt.Errorf("bad line %+v", l)
			}
			seen[l.Index] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != want[b] {
			t.Errorf("bucket %s: %d lines, want %d", b, n, want[b])
		}
	}
	if slices.Contains(seen, false) {
		t.Error("some address has no result line")
	}
	// A finished job survives a restart.
	v.Close()
	v2 := f.verifier(t, testConfig(), dir)
	s2, ok := v2.Job(st.ID)
	if !ok || s2.State != JobDone || !mapsEqual(s2.Buckets, want) {
		t.Fatalf("after restart: %+v %v", s2, ok)
	}
	n := 0
	if err := v2.JobResults(st.ID, "", func(JobLine) error { n++; return nil }); err != nil || n != len(addrs) {
		t.Fatalf("after restart: %d results, %v", n, err)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestProviderConcurrency checks the per-provider cap: ten domains whose
// MX hosts share one registered domain never get more than
// provider_conns sessions at once, while a bulk run still finishes.
func TestProviderConcurrency(t *testing.T) {
	f := newFixture(t)
	var addrs []string
	for d := 0; d < 10; d++ {
		dom := fmt.Sprintf("shared%d.test", d)
		f.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 mx%d.oneprovider.test.", dom, d),
			fmt.Sprintf("mx%d.oneprovider.test. 300 IN A %s", d, ipBulk))
		for i := 0; i < 20; i++ {
			addrs = append(addrs, fmt.Sprintf("u%d@%s", i, dom))
		}
	}
	c := testConfig()
	c.ProviderConns = 2
	c.RcptPerSession = 5
	v := f.verifier(t, c, "")
	rs := v.VerifyMany(context.Background(), addrs, nil)
	for _, r := range rs {
		if r.Stages.SMTP.Status != StatusAccepted && r.Stages.SMTP.Status != StatusRejected {
			t.Fatalf("%s: %+v", r.Address, r.Stages.SMTP)
		}
	}
	// The MX counts a session until its Logout, which can run just after
	// our client has seen 221 to QUIT and released the slot: allow one
	// session of overlap. Without the cap, ten workers reach ten.
	total, maxConc := f.mxs[ipBulk].Conns()
	if maxConc > c.ProviderConns+1 || total < 40 {
		t.Fatalf("sessions %d, most at once %d; want >= 40 sessions, at most %d at once", total, maxConc, c.ProviderConns+1)
	}
}

// TestWithPolicyShaper runs probes through policy's real shaper: sessions
// take its connection permits under stream "verify" (visible in its
// status) and the verdicts are unchanged.
func TestWithPolicyShaper(t *testing.T) {
	f := newFixture(t)
	sh, err := shaping.New(config.Default().Shaping, "verifier.petrel.test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	res, err := dns.NewResolver(f.dns.Addr, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{Config: testConfig(), Resolver: res, SMTPPort: f.port, Hostname: "verifier.petrel.test",
		Shaper: sh, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rs := v.VerifyMany(context.Background(), []string{"alice@ok.test", "nosuchuser@ok.test"}, nil)
	if rs[0].Verdict != Deliverable || rs[1].Verdict != Undeliverable {
		t.Fatalf("verdicts %s %s", rs[0], rs[1])
	}
	seen := false
	for _, l := range sh.Status().Limits {
		if l.Stream == probeStream {
			seen = true
			if l.ActiveConnections != 0 {
				t.Errorf("permit not released: %+v", l)
			}
		}
	}
	if !seen {
		t.Fatalf("shaper saw no %q connection: %+v", probeStream, sh.Status().Limits)
	}
}

// TestMetrics: verdict counters and the probe histogram land on the
// registry passed in.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	res, err := dns.NewResolver(f.dns.Addr, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{Config: testConfig(), Resolver: res, SMTPPort: f.port, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.VerifyMany(context.Background(), []string{"alice@ok.test", "bob@ok.test", "nosuchuser@ok.test"}, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "petrel_verify_verdicts_total":
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "petrel_verify_probe_seconds":
				got["probes"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	if got["deliverable"] != 2 || got["undeliverable"] != 1 || got["probes"] != 1 {
		t.Errorf("metrics %v; want 2 deliverable, 1 undeliverable, 1 probe batch", got)
	}
	if _, err := New(Options{Config: testConfig(), Resolver: res, Registry: reg}); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
}
