package ingest

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/petrel-mta/petrel/config"
)

// lockedBuffer is a log sink shared by session goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dialFrom opens a raw SMTP conversation from local address ip (any
// 127.0.0.0/8 address works on loopback).
func dialFrom(t *testing.T, addr, ip string) *conv {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	v := &conv{t: t, c: c, tp: textproto.NewConn(c)}
	v.expect(220, "")
	return v
}

func plainAuth(user, pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
}

// closed checks that the server closed the connection after its reply.
func (v *conv) closed() {
	v.t.Helper()
	v.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := v.tp.ReadLine(); err == nil {
		v.t.Fatalf("connection still open, read %q", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		v.t.Fatal("connection still open (read timed out)")
	}
}

func limitConfig(t *testing.T) config.SMTPConfig {
	cfg := testSMTPConfig()
	cfg.Mynetworks = []string{"10.0.0.0/8"} // loopback clients must AUTH to relay
	cfg.MaxRecipients = 100
	cfg.Users = []config.SMTPUser{{Name: "bc", PasswordHash: bcryptHash(t, "bc-secret")}}
	cfg.AuthFailureBurst = 1000 // these cases test the session limit
	return cfg
}

// TestHardErrorLimit: a session is closed with 421 4.7.0 at its 20th
// error (default hard_error_limit), whether the errors are failed AUTH
// or refused RCPTs; an accepted message forgives the RCPT errors but not
// the failed AUTH.
func TestHardErrorLimit(t *testing.T) {
	tests := []struct {
		name string
		run  func(v *conv)
	}{
		{"failed AUTH", func(v *conv) {
			for range 19 {
				v.cmd(plainAuth("bc", "wrong"), 535, "5.7.8")
			}
			v.cmd(plainAuth("bc", "wrong"), 421, "4.7.0")
		}},
		{"refused RCPT", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			for range 19 {
				v.cmd("RCPT TO:<x@example.com>", 554, "5.7.1")
			}
			v.cmd("RCPT TO:<x@example.com>", 421, "4.7.0")
		}},
		{"mixed, an accepted message forgives RCPT errors only", func(v *conv) {
			for range 5 {
				v.cmd(plainAuth("bc", "wrong"), 535, "5.7.8")
			}
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			for range 14 {
				v.cmd("RCPT TO:<x@example.com>", 554, "5.7.1")
			}
			v.cmd(plainAuth("bc", "bc-secret"), 235, "")
			v.cmd("RCPT TO:<y@example.com>", 250, "")
			v.data(simpleMsg, 250, "queued as") // 19 errors forgiven down to 5
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			for range 14 {
				v.cmd("RCPT TO:<x@-bad-.com>", 501, "5.1.3")
			}
			v.cmd("RCPT TO:<x@-bad-.com>", 421, "4.7.0")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startSMTP(t, limitConfig(t), nil)
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			tt.run(v)
			v.closed()
			if n := metricValue(t, e.reg, "petrel_smtp_error_disconnects_total", "hard_error_limit"); n != 1 {
				t.Errorf("hard_error_limit disconnects %v, want 1", n)
			}
			// The server still serves others.
			w := dial(t, e.addr)
			w.cmd("EHLO again.test", 250, "")
		})
	}
}

// TestErrorSleep: the n-th failed AUTH is answered after n × error_sleep,
// and errors beyond soft_error_limit after (n - soft) × error_sleep.
func TestErrorSleep(t *testing.T) {
	const step = 60 * time.Millisecond
	cfg := limitConfig(t)
	cfg.ErrorSleep = config.Duration{Duration: step}
	cfg.SoftErrorLimit = 5
	e := startSMTP(t, cfg, nil)
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	for n := 1; n <= 3; n++ {
		start := time.Now()
		v.cmd(plainAuth("bc", "wrong"), 535, "5.7.8")
		if d := time.Since(start); d < time.Duration(n)*step {
			t.Errorf("failed AUTH %d answered after %v, want at least %v", n, d, time.Duration(n)*step)
		}
	}
	// 3 errors so far; errors 4 and 5 are within the soft limit, 6 and 7
	// wait 1 and 2 steps.
	v.cmd("MAIL FROM:<a@example.org>", 250, "")
	for n := 4; n <= 7; n++ {
		start := time.Now()
		v.cmd("RCPT TO:<x@example.com>", 554, "5.7.1")
		if want := time.Duration(n-5) * step; n > 5 && time.Since(start) < want {
			t.Errorf("error %d answered after %v, want at least %v", n, time.Since(start), want)
		}
	}
}

// TestAuthRateLimitAcrossSessions: failed AUTH is limited per client
// address across sessions: once the burst is spent, AUTH from that
// address is answered 421 4.7.0 and the connection closed, even with the
// right password, while another address still authenticates. Each failure
// is logged with client, mechanism and user (never the password) and
// counted by reason.
func TestAuthRateLimitAcrossSessions(t *testing.T) {
	cfg := limitConfig(t)
	cfg.AuthFailureBurst = 3
	cfg.AuthFailureInterval = config.Duration{Duration: time.Hour}
	logs := &lockedBuffer{}
	e := startSMTP(t, cfg, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })

	a := dial(t, e.addr)
	a.cmd("EHLO a.test", 250, "")
	a.cmd(plainAuth("bc", "guess-1"), 535, "5.7.8")
	a.cmd(plainAuth("nobody", "guess-2"), 535, "5.7.8")
	b := dial(t, e.addr)
	b.cmd("EHLO b.test", 250, "")
	b.cmd("AUTH LOGIN "+base64.StdEncoding.EncodeToString([]byte("bc")), 334, "")
	b.cmd(base64.StdEncoding.EncodeToString([]byte("guess-3")), 535, "5.7.8")
	// The burst of 3 is spent: the next AUTH, in either session, is refused
	// before any credentials are read.
	b.cmd("AUTH PLAIN", 421, "4.7.0")
	b.closed()
	c := dial(t, e.addr)
	c.cmd("EHLO c.test", 250, "")
	c.cmd(plainAuth("bc", "bc-secret"), 421, "4.7.0")
	c.closed()
	// Another client address is not affected.
	d := dialFrom(t, e.addr, "127.0.0.2")
	d.cmd("EHLO d.test", 250, "")
	d.cmd(plainAuth("bc", "bc-secret"), 235, "")
	// Session a may still send mail it is allowed to (nothing to relay).
	a.cmd("NOOP", 250, "")

	for _, w := range []struct {
		reason string
		n      float64
	}{{authBadPassword, 2}, {authUnknownUser, 1}, {authRateLimited, 2}} {
		if got := metricValue(t, e.reg, "petrel_smtp_auth_failures_total", w.reason); got != w.n {
			t.Errorf("petrel_smtp_auth_failures_total{reason=%q} = %v, want %v", w.reason, got, w.n)
		}
	}
	if n := metricValue(t, e.reg, "petrel_smtp_error_disconnects_total", "auth_rate_limit"); n != 2 {
		t.Errorf("auth_rate_limit disconnects %v, want 2", n)
	}
	out := logs.String()
	for _, want := range []string{`client=127.0.0.1 mechanism=PLAIN user=bc reason=bad_password`,
		`mechanism=PLAIN user=nobody reason=unknown_user`, `mechanism=LOGIN user=bc reason=bad_password`, `reason=rate_limited`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"guess-1", "guess-2", "guess-3", "bc-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a password %q", secret)
		}
	}
}

func TestAuthClientsBounded(t *testing.T) {
	a := &authClients{limit: 0, burst: 2, max: 3, m: map[netip.Prefix]*rate.Limiter{}}
	now := time.Now()
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
		a.fail(netip.MustParseAddr(s), now)
		if a.len() > 3 {
			t.Fatalf("%d entries, max 3", a.len())
		}
	}
	// One IPv6 /64 is one client.
	x, y := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if !a.fail(x, now) || !a.fail(y, now) || a.fail(x, now) {
		t.Fatal("two failures from one /64 should spend its burst of 2")
	}
	if !a.blocked(y, now) || a.blocked(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Fatal("the /64 is blocked, its neighbour is not")
	}
	a.fail(netip.MustParseAddr("::ffff:198.51.100.7"), now)
	a.fail(netip.MustParseAddr("198.51.100.7"), now)
	if !a.blocked(netip.MustParseAddr("198.51.100.7"), now) {
		t.Fatal("an IPv4-mapped address must count as the IPv4 address")
	}
}
