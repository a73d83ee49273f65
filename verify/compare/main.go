// Command compare runs Petrel's verify package and AfterShip's
// email-verifier v1.4.1 on the same loopback fixtures (a test DNS server
// and scripted MX hosts on 127.0.0.N:25) and prints where their answers
// differ from each other and from what the fixture is. It lives in its own
// module so the AfterShip dependency stays out of Petrel's go.mod.
//
//	cd verify/compare && go run .        (needs to bind port 25: run as root)
//
// AfterShip resolves with the net package's default resolver and always
// dials port 25, so this program points net.DefaultResolver at the test
// DNS server; that global change is confined to this comparison program.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	emailverifier "github.com/AfterShip/email-verifier"
	mdns "github.com/miekg/dns"

	"github.com/petrel-mta/petrel/dns"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/verify"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// mainRcpt scripts the main MX host by local part.
func mainRcpt(rcpt string, attempt int) error {
	local := strings.ToLower(rcpt[:strings.LastIndexByte(rcpt, '@')])
	switch local {
	case "alice", "bob", "用户", "admin", "john doe": // go-smtp unquotes local parts
		return nil
	case "full":
		return testnet.Reply(552, "5.2.2", "mailbox full")
	case "full4":
		return testnet.Reply(452, "4.2.2", "mailbox full, try later")
	case "disabled":
		return testnet.Reply(550, "5.2.1", "account disabled")
	case "blocked":
		return testnet.Reply(554, "5.7.1", "Service unavailable; client host blocked using a blocklist")
	case "grey", "grey-aftership":
		if attempt == 1 {
			return testnet.Reply(450, "4.7.1", "greylisted, try again later")
		}
		return nil
	}
	return testnet.Reply(550, "5.1.1", "user unknown")
}

type tcase struct {
	name, addr string
	// truth is what the fixture makes the address, in Petrel's verdict
	// vocabulary ("unknown" where no probe can know).
	truth string
}

var cases = []tcase{
	{"existing user", "alice@ok.test", "deliverable"},
	{"user unknown 550 5.1.1", "nosuchuser@ok.test", "undeliverable"},
	{"catch-all", "anyone@catchall.test", "risky"},
	{"mailbox full 552", "full@ok.test", "risky"},
	{"mailbox full 452", "full4@ok.test", "risky"},
	{"greylist 450 then accept", "grey@ok.test", "deliverable"},
	{"blocked 554 at RCPT", "blocked@ok.test", "unknown"},
	{"blocked 554 session", "alice@blockedconn.test", "unknown"},
	{"disabled account", "disabled@ok.test", "undeliverable"},
	{"tarpit", "alice@tarpit.test", "unknown"},
	{"connection refused", "alice@refused.test", "unknown"},
	{"null MX", "alice@nullmx.test", "undeliverable"},
	{"A-record fallback", "alice@afallback.test", "deliverable"},
	{"NXDOMAIN", "alice@nothing.test", "undeliverable"},
	{"SERVFAIL", "alice@servfail.test", "unknown"},
	{"dead primary, live secondary", "alice@deadprimary.test", "deliverable"},
	{"IDN domain", "alice@bücher.test", "deliverable"},
	{"UTF-8 local part", "用户@ok.test", "deliverable"},
	{"quoted local part", `"john doe"@ok.test`, "deliverable"},
	{"disposable", "alice@mailinator.com", "risky"},
	{"role", "admin@ok.test", "risky"},
	{"free provider", "alice@gmail.com", "deliverable"},
	{"typo, no such domain", "alice@gmial.com", "undeliverable"},
	{"typo, domain has MX", "alice@hotmial.com", "risky"},
	{"bad syntax", "alice@@ok.test", "undeliverable"},
}

func run() error {
	d, err := testnet.StartDNS()
	if err != nil {
		return err
	}
	defer d.Close()
	start := func(ip string, s testnet.MXScript) error {
		_, err := testnet.StartMX(testnet.MXOptions{Addr: ip + ":25", Script: s})
		if err != nil {
			return fmt.Errorf("%w (binding port 25 needs root)", err)
		}
		return nil
	}
	for ip, s := range map[string]testnet.MXScript{
		"127.0.0.2": {OnRcpt: mainRcpt},
		"127.0.0.3": {},
		"127.0.0.4": {OnConnect: func(int) error { time.Sleep(3 * time.Second); return nil }},
		"127.0.0.6": {OnConnect: func(int) error { return testnet.Reply(554, "5.7.1", "your IP is on our blocklist") }},
		"127.0.0.7": {OnRcpt: bulkRcpt},
	} {
		if err := start(ip, s); err != nil {
			return err
		}
	}
	d.Add(
		"mx.main.test. 300 IN A 127.0.0.2", "mx.catchall.test. 300 IN A 127.0.0.3",
		"mx.tarpit.test. 300 IN A 127.0.0.4", "mx.refused.test. 300 IN A 127.0.0.5",
		"mx.blocked.test. 300 IN A 127.0.0.6",
		"ok.test. 300 IN MX 10 mx.main.test.", "catchall.test. 300 IN MX 10 mx.catchall.test.",
		"tarpit.test. 300 IN MX 10 mx.tarpit.test.", "refused.test. 300 IN MX 10 mx.refused.test.",
		"blockedconn.test. 300 IN MX 10 mx.blocked.test.", "nullmx.test. 300 IN MX 0 .",
		"afallback.test. 300 IN A 127.0.0.2",
		"deadprimary.test. 300 IN MX 10 mx.refused.test.", "deadprimary.test. 300 IN MX 20 mx.main.test.",
		"xn--bcher-kva.test. 300 IN MX 10 mx.main.test.",
		"mailinator.com. 300 IN MX 10 mx.main.test.", "gmail.com. 300 IN MX 10 mx.main.test.",
		"hotmial.com. 300 IN MX 10 mx.main.test.",
	)
	d.SetRcode("servfail.test.", mdns.RcodeServerFailure)
	bulk := bulkFixture(d, 40)

	// AfterShip uses the net package's resolver.
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, network, d.Addr)
	}}

	log := slog.New(slog.DiscardHandler)
	res, err := dns.NewResolver(d.Addr, time.Second, log)
	if err != nil {
		return err
	}
	cfg := config.Default().Verify
	cfg.ConnectTimeout.Duration, cfg.CommandTimeout.Duration = time.Second, time.Second
	cfg.GreylistDelay.Duration = 100 * time.Millisecond
	cfg.ProviderRate, cfg.ProviderBurst, cfg.ProviderConns = 1000, 100, 16
	ours, err := verify.New(verify.Options{Config: cfg, Resolver: res, SMTPPort: 25, Hostname: "compare.petrel.test", Logger: log})
	if err != nil {
		return err
	}
	defer ours.Close()
	theirs := emailverifier.NewVerifier().EnableSMTPCheck().EnableDomainSuggest().
		ConnectTimeout(time.Second).OperationTimeout(time.Second).HelloName("compare.petrel.test").FromEmail("verify@compare.petrel.test")

	ctx := context.Background()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tfixture truth\tpetrel\tpetrel reasons\taftership\taftership detail\t")
	var okOurs, okTheirs int
	for _, c := range cases {
		r := ours.Verify(ctx, c.addr)
		// Greylisting remembers attempts per address: give AfterShip its
		// own address so it also meets the first 450.
		av, detail := aftership(theirs, strings.Replace(c.addr, "grey@", "grey-aftership@", 1))
		mark := func(v string) string {
			if v == c.truth {
				return v
			}
			return v + " ✗"
		}
		if string(r.Verdict) == c.truth {
			okOurs++
		}
		if av == c.truth {
			okTheirs++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", c.name, c.truth, mark(string(r.Verdict)), strings.Join(r.Reasons, ","), mark(av), detail)
	}
	tw.Flush()
	fmt.Printf("\nagree with the fixture: petrel %d/%d, aftership %d/%d\n", okOurs, len(cases), okTheirs, len(cases))

	// Throughput on the bulk fixture: Petrel's bulk path vs AfterShip's
	// Verify from 32 goroutines.
	t0 := time.Now()
	rs := ours.VerifyMany(ctx, bulk, nil)
	ourRate := float64(len(rs)) / time.Since(t0).Seconds()
	t0 = time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(bulk); i = int(next.Add(1)) - 1 {
				_, _ = theirs.Verify(bulk[i])
			}
		}()
	}
	wg.Wait()
	theirRate := float64(len(bulk)) / time.Since(t0).Seconds()
	fmt.Printf("bulk (%d addresses over 20 domains, loopback): petrel %.0f addresses/s, aftership (32 goroutines) %.0f addresses/s\n",
		len(bulk), ourRate, theirRate)
	return nil
}

// aftership maps AfterShip's answer onto Petrel's verdict vocabulary:
// reachable yes/no/unknown -> deliverable/undeliverable/unknown, an
// invalid syntax -> undeliverable, an error -> unknown.
func aftership(v *emailverifier.Verifier, addr string) (string, string) {
	r, err := v.Verify(addr)
	if err != nil {
		return "unknown", "error: " + firstLine(err.Error())
	}
	if !r.Syntax.Valid {
		return "undeliverable", "syntax invalid"
	}
	var bits []string
	if r.Disposable {
		bits = append(bits, "disposable")
	}
	if r.RoleAccount {
		bits = append(bits, "role")
	}
	if r.Free {
		bits = append(bits, "free")
	}
	if r.Suggestion != "" {
		bits = append(bits, "suggest="+r.Suggestion)
	}
	if s := r.SMTP; s != nil {
		for name, on := range map[string]bool{"catch_all": s.CatchAll, "full_inbox": s.FullInbox, "disabled": s.Disabled} {
			if on {
				bits = append(bits, name)
			}
		}
	}
	verdict := map[string]string{"yes": "deliverable", "no": "undeliverable"}[r.Reachable]
	if verdict == "" {
		verdict = "unknown"
	}
	return verdict, "reachable=" + r.Reachable + " " + strings.Join(bits, ",")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	if len(s) > 60 {
		return s[:60]
	}
	return s
}

// bulkRcpt: u<n> local parts, n%10 of 7 or 8 unknown, 9 full, else ok.
func bulkRcpt(rcpt string, _ int) error {
	var n int
	if _, err := fmt.Sscanf(rcpt, "u%d@", &n); err != nil {
		return testnet.Reply(550, "5.1.1", "no such user")
	}
	switch n % 10 {
	case 7, 8:
		return testnet.Reply(550, "5.1.1", "no such user")
	case 9:
		return testnet.Reply(552, "5.2.2", "over quota")
	}
	return nil
}

func bulkFixture(d *testnet.DNS, perDomain int) []string {
	var out []string
	for i := 0; i < 20; i++ {
		dom := fmt.Sprintf("bulk%02d.test", i)
		d.Add(fmt.Sprintf("%s. 300 IN MX 10 mx.%s.", dom, dom), fmt.Sprintf("mx.%s. 300 IN A 127.0.0.7", dom))
		for n := 0; n < perDomain; n++ {
			out = append(out, fmt.Sprintf("u%d@%s", n, dom))
		}
	}
	return out
}
