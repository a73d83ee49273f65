package delivery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

// fixture is a loopback world: a DNS server and MX hosts on 127.0.0.N
// sharing one port (delivery.smtp_port).
type fixture struct {
	dns  *testnet.DNS
	port int
	res  *dns.Resolver
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	res, err := dns.NewResolver(d.Addr, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	port, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dns: d, port: port, res: res}
}

func (f *fixture) addr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(f.port)) }

func (f *fixture) startMX(t testing.TB, ip string, o testnet.MXOptions) *testnet.MX {
	t.Helper()
	o.Addr = f.addr(ip)
	m, err := testnet.StartMX(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func testDeliveryConfig(port int) config.DeliveryConfig {
	c := config.Default().Delivery
	c.SMTPPort = port
	c.Workers = 4
	c.ConnectTimeout.Duration = time.Second
	c.CommandTimeout.Duration = 2 * time.Second
	c.DataTimeout.Duration = 2 * time.Second
	c.IdleTimeout.Duration = 5 * time.Second
	c.ShutdownTimeout.Duration = 2 * time.Second
	return c
}

func (f *fixture) deliverer(t testing.TB, mod func(*Options)) *Deliverer {
	t.Helper()
	o := Options{
		Hostname: "petrel.test",
		Config:   testDeliveryConfig(f.port),
		Resolver: f.res,
		Logger:   slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func batch(domain string, rcpts ...string) *queue.Batch {
	b := &queue.Batch{MsgID: "msg-1", Envelope: queue.Envelope{From: "sender@src.test", Stream: "transactional"}, Domain: domain}
	for i, r := range rcpts {
		b.Rcpts = append(b.Rcpts, queue.Rcpt{Index: i, Addr: r})
	}
	return b
}

const testBody = "From: sender@src.test\r\nTo: x@dest.test\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"

func outcomes(res []queue.Result) []queue.Outcome {
	out := make([]queue.Outcome, len(res))
	for i, r := range res {
		out[i] = r.Outcome
	}
	return out
}

func sameOutcomes(a, b []queue.Outcome) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var (
	delivered = queue.Delivered
	deferred  = queue.Deferred
	bounced   = queue.Bounced
)

func TestDeliverOutcomes(t *testing.T) {
	type world struct {
		f  *fixture
		mx *testnet.MX // the MX that should (eventually) take the mail
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *fixture) *testnet.MX
		domain string
		rcpts  []string
		// want per attempt: Deliver is called once per entry.
		want    [][]queue.Outcome
		wantMX  string // RemoteMX of the last attempt's first result
		code    int    // Code of the first attempt's first result
		enh     string
		reason  string
		check   func(t *testing.T, w world, res []queue.Result)
		options func(*Options)
	}{
		{
			name: "mx preference and fallback",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("fb.test. 300 IN MX 30 mx3.fb.test.", "fb.test. 300 IN MX 10 mx1.fb.test.",
					"fb.test. 300 IN MX 20 mx2.fb.test.",
					"mx1.fb.test. 300 IN A 127.0.0.2", "mx2.fb.test. 300 IN A 127.0.0.3", "mx3.fb.test. 300 IN A 127.0.0.4")
				// 127.0.0.2: nothing listens (connection refused).
				f.startMX(t, "127.0.0.3", testnet.MXOptions{Script: testnet.MXScript{
					OnConnect: func(int) error { return testnet.ErrDrop }}})
				return f.startMX(t, "127.0.0.4", testnet.MXOptions{})
			},
			domain: "fb.test", rcpts: []string{"a@fb.test"},
			want: [][]queue.Outcome{{delivered}}, wantMX: "mx3.fb.test", code: 250,
		},
		{
			name: "connection dropped after greeting falls back",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("dg.test. 300 IN MX 10 a.dg.test.", "dg.test. 300 IN MX 20 b.dg.test.",
					"a.dg.test. 300 IN A 127.0.0.22", "b.dg.test. 300 IN A 127.0.0.23")
				f.startMX(t, "127.0.0.22", testnet.MXOptions{Script: testnet.MXScript{
					OnMail: func(string) error { return testnet.ErrDrop }}})
				return f.startMX(t, "127.0.0.23", testnet.MXOptions{})
			},
			domain: "dg.test", rcpts: []string{"a@dg.test"},
			want: [][]queue.Outcome{{delivered}}, wantMX: "b.dg.test", code: 250,
		},
		{
			name: "lower preference wins",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("pr.test. 300 IN MX 20 b.pr.test.", "pr.test. 300 IN MX 10 a.pr.test.",
					"a.pr.test. 300 IN A 127.0.0.5", "b.pr.test. 300 IN A 127.0.0.6")
				f.startMX(t, "127.0.0.6", testnet.MXOptions{})
				return f.startMX(t, "127.0.0.5", testnet.MXOptions{})
			},
			domain: "pr.test", rcpts: []string{"a@pr.test"},
			want: [][]queue.Outcome{{delivered}}, wantMX: "a.pr.test", code: 250,
		},
		{
			name: "implicit mx",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("im.test. 300 IN A 127.0.0.7")
				return f.startMX(t, "127.0.0.7", testnet.MXOptions{})
			},
			domain: "im.test", rcpts: []string{"a@im.test"},
			want: [][]queue.Outcome{{delivered}}, wantMX: "im.test", code: 250,
		},
		{
			name:   "null mx bounces",
			setup:  func(t *testing.T, f *fixture) *testnet.MX { f.dns.Add("null.test. 300 IN MX 0 ."); return nil },
			domain: "null.test", rcpts: []string{"a@null.test", "b@null.test"},
			want: [][]queue.Outcome{{bounced, bounced}}, enh: "5.1.10", reason: "notaccept",
		},
		{
			name:   "nxdomain bounces",
			setup:  func(t *testing.T, f *fixture) *testnet.MX { return nil },
			domain: "nx.test", rcpts: []string{"a@nx.test"},
			want: [][]queue.Outcome{{bounced}}, enh: "5.1.2", reason: "hostunknown",
		},
		{
			name: "servfail defers",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.SetRcode("sf.test", 2)
				return nil
			},
			domain: "sf.test", rcpts: []string{"a@sf.test"},
			want: [][]queue.Outcome{{deferred}}, enh: "4.4.3",
		},
		{
			name: "all hosts down defers",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("down.test. 300 IN MX 10 mx.down.test.", "mx.down.test. 300 IN A 127.0.0.8")
				return nil
			},
			domain: "down.test", rcpts: []string{"a@down.test"},
			want: [][]queue.Outcome{{deferred}}, wantMX: "mx.down.test",
		},
		{
			name: "421 greeting defers then delivers",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("gr.test. 300 IN MX 10 mx.gr.test.", "mx.gr.test. 300 IN A 127.0.0.9")
				return f.startMX(t, "127.0.0.9", testnet.MXOptions{Script: testnet.MXScript{
					OnConnect: func(n int) error {
						if n == 1 {
							return testnet.Reply(421, "4.3.2", "busy, try later")
						}
						return nil
					}}})
			},
			domain: "gr.test", rcpts: []string{"a@gr.test"},
			want: [][]queue.Outcome{{deferred}, {delivered}}, code: 421, enh: "4.3.2",
		},
		{
			name: "450 then 250",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("gl.test. 300 IN MX 10 mx.gl.test.", "mx.gl.test. 300 IN A 127.0.0.10")
				return f.startMX(t, "127.0.0.10", testnet.MXOptions{Script: testnet.MXScript{
					OnRcpt: func(rcpt string, attempt int) error {
						if attempt == 1 {
							return testnet.Reply(450, "4.2.0", "greylisted")
						}
						return nil
					}}})
			},
			domain: "gl.test", rcpts: []string{"a@gl.test", "b@gl.test"},
			want: [][]queue.Outcome{{deferred, deferred}, {delivered, delivered}}, code: 450, enh: "4.2.0",
			check: func(t *testing.T, w world, res []queue.Result) {
				if res[0].Reply != "250 2.0.0 OK: queued" && !strings.HasPrefix(res[0].Reply, "250") {
					t.Errorf("reply %q", res[0].Reply)
				}
			},
		},
		{
			name: "550 per recipient, others delivered in the same transaction",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("pr550.test. 300 IN MX 10 mx.pr550.test.", "mx.pr550.test. 300 IN A 127.0.0.11")
				return f.startMX(t, "127.0.0.11", testnet.MXOptions{Script: testnet.MXScript{
					OnRcpt: func(rcpt string, _ int) error {
						if strings.HasPrefix(rcpt, "bad") {
							return testnet.Reply(550, "5.1.1", "user unknown")
						}
						return nil
					}}})
			},
			domain: "pr550.test", rcpts: []string{"a@pr550.test", "bad@pr550.test", "c@pr550.test"},
			want: [][]queue.Outcome{{delivered, bounced, delivered}}, code: 250,
			options: func(o *Options) {
				o.Classify = func(code int, enh, text string) (string, bool) {
					if enh == "5.1.1" {
						return "userunknown", true
					}
					return "other", code >= 500
				}
			},
			check: func(t *testing.T, w world, res []queue.Result) {
				if r := res[1]; r.Code != 550 || r.Enhanced != "5.1.1" || r.Reply != "550 5.1.1 user unknown" || r.Reason != "userunknown" {
					t.Errorf("bad rcpt result %+v", r)
				}
				mails := w.mx.Mails()
				if len(mails) != 1 || strings.Join(mails[0].Rcpts, ",") != "a@pr550.test,c@pr550.test" {
					t.Errorf("mails %+v", mails)
				}
			},
		},
		{
			name: "drop mid-DATA defers",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("drop.test. 300 IN MX 10 mx.drop.test.", "mx.drop.test. 300 IN A 127.0.0.12")
				return f.startMX(t, "127.0.0.12", testnet.MXOptions{Script: testnet.MXScript{
					OnData: func(string, []string, []byte) error { return testnet.ErrDrop }}})
			},
			domain: "drop.test", rcpts: []string{"a@drop.test", "b@drop.test"},
			want: [][]queue.Outcome{{deferred, deferred}}, enh: "4.4.2", wantMX: "mx.drop.test",
		},
		{
			name: "data 554 bounces accepted recipients",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("spam.test. 300 IN MX 10 mx.spam.test.", "mx.spam.test. 300 IN A 127.0.0.13")
				return f.startMX(t, "127.0.0.13", testnet.MXOptions{Script: testnet.MXScript{
					OnData: func(string, []string, []byte) error { return testnet.Reply(554, "5.7.1", "spam") }}})
			},
			domain: "spam.test", rcpts: []string{"a@spam.test", "b@spam.test"},
			want: [][]queue.Outcome{{bounced, bounced}}, code: 554, enh: "5.7.1",
		},
		{
			name: "mail from rejected",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("mf.test. 300 IN MX 10 mx.mf.test.", "mx.mf.test. 300 IN A 127.0.0.14")
				return f.startMX(t, "127.0.0.14", testnet.MXOptions{Script: testnet.MXScript{
					OnMail: func(string) error { return testnet.Reply(553, "5.7.1", "sender rejected") }}})
			},
			domain: "mf.test", rcpts: []string{"a@mf.test", "b@mf.test"},
			want: [][]queue.Outcome{{bounced, bounced}}, code: 553, enh: "5.7.1",
		},
		{
			name: "550 then dropped connection keeps the 550",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("rd.test. 300 IN MX 10 a.rd.test.", "rd.test. 300 IN MX 20 b.rd.test.",
					"a.rd.test. 300 IN A 127.0.0.24", "b.rd.test. 300 IN A 127.0.0.25")
				f.startMX(t, "127.0.0.25", testnet.MXOptions{})
				return f.startMX(t, "127.0.0.24", testnet.MXOptions{Script: testnet.MXScript{
					OnRcpt: func(rcpt string, _ int) error {
						if strings.HasPrefix(rcpt, "bad") {
							return testnet.Reply(550, "5.1.1", "user unknown")
						}
						return testnet.ErrDrop
					}}})
			},
			domain: "rd.test", rcpts: []string{"bad@rd.test", "b@rd.test"},
			want: [][]queue.Outcome{{bounced, deferred}}, code: 550, enh: "5.1.1", wantMX: "a.rd.test",
		},
		{
			name: "multi-recipient single transaction, byte-identical body",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("multi.test. 300 IN MX 10 mx.multi.test.", "mx.multi.test. 300 IN A 127.0.0.15")
				return f.startMX(t, "127.0.0.15", testnet.MXOptions{})
			},
			domain: "multi.test", rcpts: []string{"1@multi.test", "2@multi.test", "3@multi.test", "4@multi.test", "5@multi.test"},
			want: [][]queue.Outcome{{delivered, delivered, delivered, delivered, delivered}}, code: 250,
			check: func(t *testing.T, w world, res []queue.Result) {
				mails := w.mx.Mails()
				if len(mails) != 1 || len(mails[0].Rcpts) != 5 || mails[0].From != "sender@src.test" {
					t.Fatalf("want one mail with 5 rcpts, got %+v", mails)
				}
				if !bytes.Equal(mails[0].Data, []byte(testBody)) {
					t.Errorf("body differs:\n%q\n%q", mails[0].Data, testBody)
				}
			},
		},
		{
			name: "starttls used when offered",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("tls.test. 300 IN MX 10 mx.tls.test.", "mx.tls.test. 300 IN A 127.0.0.16")
				return f.startMX(t, "127.0.0.16", testnet.MXOptions{TLS: true, Domain: "mx.tls.test"})
			},
			domain: "tls.test", rcpts: []string{"a@tls.test"},
			want: [][]queue.Outcome{{delivered}}, code: 250,
			check: func(t *testing.T, w world, res []queue.Result) {
				if m := w.mx.Mails(); len(m) != 1 || !m[0].TLS {
					t.Errorf("mail not over TLS: %+v", m)
				}
			},
		},
		{
			name: "tls required but not offered defers",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("notls.test. 300 IN MX 10 mx.notls.test.", "mx.notls.test. 300 IN A 127.0.0.17")
				return f.startMX(t, "127.0.0.17", testnet.MXOptions{})
			},
			options: func(o *Options) { o.Config.RequireTLS = true },
			domain:  "notls.test", rcpts: []string{"a@notls.test"},
			want: [][]queue.Outcome{{deferred}},
			check: func(t *testing.T, w world, res []queue.Result) {
				if w.mx.Count() != 0 || !strings.Contains(res[0].Reply, "STARTTLS not offered") {
					t.Errorf("sent in clear text: %+v", res[0])
				}
			},
		},
		{
			name: "transport map bypasses MX",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				return f.startMX(t, "127.0.0.18", testnet.MXOptions{})
			},
			options: func(o *Options) {
				relay := net.JoinHostPort("127.0.0.18", strconv.Itoa(o.Config.SMTPPort))
				o.Transport = func(d string) (string, bool) { return relay, d == "relayed.test" }
			},
			domain: "relayed.test", rcpts: []string{"a@relayed.test"},
			want: [][]queue.Outcome{{delivered}}, code: 250, wantMX: "127.0.0.18",
		},
		{
			name: "smtputf8 when the address needs it",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("utf.test. 300 IN MX 10 mx.utf.test.", "mx.utf.test. 300 IN A 127.0.0.19")
				return f.startMX(t, "127.0.0.19", testnet.MXOptions{})
			},
			domain: "utf.test", rcpts: []string{"jösé@utf.test"},
			want: [][]queue.Outcome{{delivered}}, code: 250,
			check: func(t *testing.T, w world, res []queue.Result) {
				if m := w.mx.Mails(); len(m) != 1 || m[0].Rcpts[0] != "jösé@utf.test" {
					t.Errorf("mails %+v", m)
				}
			},
		},
		{
			name: "smtputf8 not offered bounces",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("noutf.test. 300 IN MX 10 mx.noutf.test.", "mx.noutf.test. 300 IN A 127.0.0.20")
				return f.startMX(t, "127.0.0.20", testnet.MXOptions{NoSMTPUTF8: true})
			},
			domain: "noutf.test", rcpts: []string{"jösé@noutf.test"},
			want: [][]queue.Outcome{{bounced}}, enh: "5.6.7",
		},
		{
			name: "suppressed recipient is not sent",
			setup: func(t *testing.T, f *fixture) *testnet.MX {
				f.dns.Add("sup.test. 300 IN MX 10 mx.sup.test.", "mx.sup.test. 300 IN A 127.0.0.21")
				return f.startMX(t, "127.0.0.21", testnet.MXOptions{})
			},
			options: func(o *Options) { o.Suppressor = suppressList{"no@sup.test": "unsubscribed"} },
			domain:  "sup.test", rcpts: []string{"yes@sup.test", "no@sup.test"},
			want: [][]queue.Outcome{{delivered, queue.Suppressed}}, code: 250,
			check: func(t *testing.T, w world, res []queue.Result) {
				if res[1].Reason != "suppressed:unsubscribed" {
					t.Errorf("reason %q", res[1].Reason)
				}
				if m := w.mx.Mails(); len(m) != 1 || len(m[0].Rcpts) != 1 {
					t.Errorf("mails %+v", m)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			mx := tc.setup(t, f)
			d := f.deliverer(t, tc.options)
			var res []queue.Result
			for i, want := range tc.want {
				res = d.Deliver(context.Background(), batch(tc.domain, tc.rcpts...), []byte(testBody))
				if got := outcomes(res); !sameOutcomes(got, want) {
					t.Fatalf("attempt %d: outcomes %v, want %v; results %+v", i+1, got, want, res)
				}
				if i == 0 {
					if tc.code != 0 && res[0].Code != tc.code {
						t.Errorf("code %d, want %d (%+v)", res[0].Code, tc.code, res[0])
					}
					if tc.enh != "" && res[0].Enhanced != tc.enh {
						t.Errorf("enhanced %q, want %q (%+v)", res[0].Enhanced, tc.enh, res[0])
					}
					if tc.reason != "" && res[0].Reason != tc.reason {
						t.Errorf("reason %q, want %q", res[0].Reason, tc.reason)
					}
				}
				for j, r := range res {
					if r.Index != j {
						t.Errorf("result %d has index %d", j, r.Index)
					}
				}
			}
			if tc.wantMX != "" && res[0].RemoteMX != tc.wantMX {
				t.Errorf("remote %q, want %q", res[0].RemoteMX, tc.wantMX)
			}
			if tc.check != nil {
				tc.check(t, world{f: f, mx: mx}, res)
			}
		})
	}
}

type suppressList map[string]string

func (s suppressList) Suppressed(_, addr string) (string, bool) {
	r, ok := s[addr]
	return r, ok
}

func TestConnectionReuseAndDNSCache(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("reuse.test. 300 IN MX 10 mx.reuse.test.", "mx.reuse.test. 300 IN A 127.0.0.2")
	mx := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
	reg := prometheus.NewRegistry()
	d := f.deliverer(t, func(o *Options) { o.Registry = reg })
	for i := range 3 {
		b := batch("reuse.test", fmt.Sprintf("r%d@reuse.test", i))
		if res := d.Deliver(context.Background(), b, []byte(testBody)); res[0].Outcome != queue.Delivered {
			t.Fatalf("batch %d: %+v", i, res)
		}
	}
	if total, _ := mx.Conns(); total != 1 {
		t.Fatalf("%d connections for 3 batches, want 1", total)
	}
	if q := f.dns.Queries("reuse.test", "MX"); q != 1 {
		t.Fatalf("%d MX queries, want 1 (cached)", q)
	}
	// A pooled connection the server closed is detected and replaced.
	mx.Close()
	mx2 := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
	if res := d.Deliver(context.Background(), batch("reuse.test", "late@reuse.test"), []byte(testBody)); res[0].Outcome != queue.Delivered {
		t.Fatalf("after server restart: %+v", res)
	}
	if mx2.Count() != 1 {
		t.Fatalf("new server got %d mails", mx2.Count())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range mfs {
		names[m.GetName()] = true
	}
	for _, n := range []string{"petrel_delivery_attempts_total", "petrel_delivery_seconds", "petrel_delivery_connections_open",
		"petrel_delivery_connections_total", "petrel_dns_lookups_total"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
}

// countShaper is an mta.Shaper that counts grants and can refuse.
type countShaper struct {
	conns, msgs, released, observed chan struct{}
	refuse                          *mta.PolicyError
	egress                          mta.Egress
	maxMessages                     int
}

func newCountShaper() *countShaper {
	return &countShaper{conns: make(chan struct{}, 100), msgs: make(chan struct{}, 100),
		released: make(chan struct{}, 100), observed: make(chan struct{}, 1000)}
}

func (s *countShaper) AcquireConn(ctx context.Context, d mta.Dest) (mta.ConnPermit, error) {
	if s.refuse != nil {
		return mta.ConnPermit{}, s.refuse
	}
	s.conns <- struct{}{}
	return mta.ConnPermit{Egress: s.egress, MaxMessages: s.maxMessages, Release: func() { s.released <- struct{}{} }}, nil
}

func (s *countShaper) AcquireMessage(ctx context.Context, d mta.Dest, egress string) error {
	s.msgs <- struct{}{}
	return nil
}

func (s *countShaper) Observe(d mta.Dest, egress string, code int, enhanced, text string) {
	s.observed <- struct{}{}
}

func TestShaper(t *testing.T) {
	tests := []struct {
		name        string
		refuse      *mta.PolicyError
		maxMessages int
		want        queue.Outcome
		conns, msgs int
		released    int
	}{
		{name: "permits counted, max messages closes", maxMessages: 2, want: delivered, conns: 2, msgs: 3, released: 1},
		{name: "refusal defers", refuse: &mta.PolicyError{Reason: "suspended"}, want: deferred},
		{name: "refusal bounces", refuse: &mta.PolicyError{Reason: "blocked", Bounce: true}, want: bounced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.dns.Add("sh.test. 300 IN MX 10 mx.sh.test.", "mx.sh.test. 300 IN A 127.0.0.3")
			mx := f.startMX(t, "127.0.0.3", testnet.MXOptions{})
			s := newCountShaper()
			s.refuse, s.maxMessages = tc.refuse, tc.maxMessages
			s.egress = mta.Egress{Name: "e1", LocalIP: "127.0.0.1", EHLO: "egress1.petrel.test"}
			d := f.deliverer(t, func(o *Options) { o.Shaper = s })
			for i := range 3 {
				res := d.Deliver(context.Background(), batch("sh.test", fmt.Sprintf("r%d@sh.test", i)), []byte(testBody))
				if res[0].Outcome != tc.want {
					t.Fatalf("outcome %+v", res[0])
				}
				if tc.refuse != nil && !strings.Contains(res[0].Reply, tc.refuse.Reason) {
					t.Fatalf("reply %q", res[0].Reply)
				}
			}
			if len(s.conns) != tc.conns || len(s.msgs) != tc.msgs || len(s.released) != tc.released {
				t.Fatalf("conns %d msgs %d released %d, want %d %d %d", len(s.conns), len(s.msgs), len(s.released),
					tc.conns, tc.msgs, tc.released)
			}
			if tc.refuse == nil && len(s.observed) < 3*3 {
				t.Fatalf("observed %d replies", len(s.observed))
			}
			if tc.refuse != nil && mx.Count() != 0 {
				t.Fatal("mail sent despite refusal")
			}
		})
	}
}

func TestRunWithQueue(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("q1.test. 300 IN MX 10 mx.q1.test.", "mx.q1.test. 300 IN A 127.0.0.2",
		"q2.test. 300 IN MX 10 mx.q2.test.", "mx.q2.test. 300 IN A 127.0.0.3")
	mx1 := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
	mx2 := f.startMX(t, "127.0.0.3", testnet.MXOptions{Script: testnet.MXScript{
		OnRcpt: func(rcpt string, attempt int) error {
			if strings.HasPrefix(rcpt, "gone") {
				return testnet.Reply(550, "5.1.1", "no such user")
			}
			return nil
		}}})
	q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Minute}, MaxLifetime: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const n = 30
	ids := make([]string, n)
	for i := range n {
		env := queue.Envelope{From: "s@src.test", Recipients: []string{
			fmt.Sprintf("a%d@q1.test", i), fmt.Sprintf("b%d@q1.test", i), fmt.Sprintf("c%d@q2.test", i)}}
		if i == 0 {
			env.Recipients = append(env.Recipients, "gone@q2.test")
		}
		if ids[i], err = q.Enqueue(context.Background(), env, []byte(testBody)); err != nil {
			t.Fatal(err)
		}
	}
	d := f.deliverer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, q) }()
	ok := testnet.Wait(10*time.Second, func() bool { return q.Stats().Live == 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !ok {
		t.Fatalf("queue not drained: %+v", q.Stats())
	}
	if mx1.Count() != n || mx2.Count() != n {
		t.Fatalf("mx1 got %d, mx2 got %d, want %d each", mx1.Count(), mx2.Count(), n)
	}
	for _, m := range mx1.Mails() {
		if len(m.Rcpts) != 2 || !bytes.Equal(m.Data, []byte(testBody)) {
			t.Fatalf("mx1 mail %+v", m)
		}
	}
	info, err := q.Message(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]queue.RcptState{}
	for _, r := range info.Recipients {
		states[r.Addr] = r.State
	}
	if states["gone@q2.test"] != queue.StateBounced || states["a0@q1.test"] != queue.StateDelivered {
		t.Fatalf("states %v", states)
	}
	if total, _ := mx1.Conns(); total > 4 {
		t.Errorf("%d connections to mx1 for %d messages with 4 workers: pool not reused", total, n)
	}
}

func TestIdleConnectionsClosed(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("idle.test. 300 IN MX 10 mx.idle.test.", "mx.idle.test. 300 IN A 127.0.0.2")
	mx := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
	d := f.deliverer(t, func(o *Options) { o.Config.IdleTimeout.Duration = 100 * time.Millisecond })
	for i := range 2 {
		if res := d.Deliver(context.Background(), batch("idle.test", "a@idle.test"), []byte(testBody)); res[0].Outcome != delivered {
			t.Fatalf("%+v", res)
		}
		if i == 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if total, _ := mx.Conns(); total != 2 {
		t.Fatalf("%d connections, want 2 (the idle one expired)", total)
	}
	if !testnet.Wait(2*time.Second, func() bool { return mx.Active() == 1 }) {
		t.Fatalf("%d connections open, want 1", mx.Active())
	}
	// The Run loop's sweeper closes the remaining idle connection.
	q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Minute}, MaxLifetime: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, q) }()
	if !testnet.Wait(2*time.Second, func() bool { return mx.Active() == 0 }) {
		t.Fatalf("sweeper left %d connections open", mx.Active())
	}
	cancel()
	<-done
}
