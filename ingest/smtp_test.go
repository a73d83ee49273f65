package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

// testPolicy is a small real Policy: a fixed suppression table, a set of
// refused sender domains and a Prepare that adds one header.
type testPolicy struct {
	suppressed map[string]string // stream+" "+addr -> reason
	badSenders map[string]bool
	prepared   sync.Map // stream -> count
}

func (p *testPolicy) Suppressed(stream, addr string) (string, bool) {
	r, ok := p.suppressed[stream+" "+strings.ToLower(addr)]
	return r, ok
}

func (p *testPolicy) CheckSender(_ context.Context, dom string) error {
	if p.badSenders[dom] {
		return fmt.Errorf("sending domain %s is unverified: DKIM record missing", dom)
	}
	return nil
}

func (p *testPolicy) PrepareMessage(_ context.Context, m *mta.Message) error {
	m.AddSignature("X-Test-Prepared: " + m.Stream + "\r\n")
	return nil
}

type smtpEnv struct {
	addr string
	q    *queue.Queue
	srv  *SMTPServer
	reg  *prometheus.Registry
}

func openQueue(t testing.TB) *queue.Queue {
	t.Helper()
	q, err := queue.Open(t.TempDir(), queue.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testSMTPConfig() config.SMTPConfig {
	return config.SMTPConfig{
		Mynetworks:     []string{"127.0.0.0/8"},
		MaxMessageSize: 64 << 10,
		MaxRecipients:  5,
		MaxLineLength:  1000,
		ReadTimeout:    config.Duration{Duration: 10 * time.Second},
		WriteTimeout:   config.Duration{Duration: 10 * time.Second},
	}
}

// startSMTP serves on 127.0.0.1:0 with a real queue in t.TempDir().
func startSMTP(t testing.TB, cfg config.SMTPConfig, mod func(*Options)) *smtpEnv {
	t.Helper()
	e := &smtpEnv{q: openQueue(t), reg: prometheus.NewRegistry()}
	o := Options{Hostname: "mx.petrel.test", SMTP: cfg, Spool: e.q,
		Logger: slog.New(slog.DiscardHandler), Registry: e.reg}
	if mod != nil {
		mod(&o)
	}
	srv, err := NewSMTPServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	e.addr, e.srv = ln.Addr().String(), srv
	return e
}

// conv is a raw SMTP conversation.
type conv struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

func dial(t *testing.T, addr string) *conv {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	v := &conv{t: t, c: c, tp: textproto.NewConn(c)}
	v.expect(220, "")
	return v
}

// cmd sends line and checks the reply code and that the text contains want.
func (v *conv) cmd(line string, code int, want string) string {
	v.t.Helper()
	if err := v.tp.PrintfLine("%s", line); err != nil {
		v.t.Fatalf("send %q: %v", line, err)
	}
	return v.expect(code, want)
}

func (v *conv) expect(code int, want string) string {
	v.t.Helper()
	got, msg, err := v.tp.ReadResponse(0)
	if err != nil && got == 0 {
		v.t.Fatalf("read reply (want %d): %v", code, err)
	}
	if got != code || !strings.Contains(msg, want) {
		v.t.Fatalf("reply %d %q, want %d containing %q", got, msg, code, want)
	}
	return msg
}

// data sends a DATA body (already dot-stuffed, without the final dot).
func (v *conv) data(body string, code int, want string) string {
	v.t.Helper()
	v.cmd("DATA", 354, "")
	if _, err := io.WriteString(v.c, body+".\r\n"); err != nil {
		v.t.Fatal(err)
	}
	return v.expect(code, want)
}

const simpleMsg = "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello Bob.\r\n"

func queuedID(t *testing.T, reply string) string {
	t.Helper()
	_, id, ok := strings.Cut(reply, "queued as ")
	if !ok || id == "" {
		t.Fatalf("no queue id in %q", reply)
	}
	return strings.TrimSpace(id)
}

func TestEHLOKeywords(t *testing.T) {
	cert, err := testnet.SelfSigned("mx.petrel.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSMTPConfig()
	cfg.Users = []config.SMTPUser{{Name: "u", PasswordHash: bcryptHash(t, "p")}}
	tests := []struct {
		name    string
		tls     bool
		want    []string
		notWant []string
	}{
		{"with tls", true, []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 65536", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH PLAIN LOGIN"}, nil},
		{"without tls", false, []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 65536", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"}, []string{"STARTTLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startSMTP(t, cfg, func(o *Options) {
				if tt.tls {
					o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				}
			})
			v := dial(t, e.addr)
			msg := v.cmd("EHLO client.test", 250, "")
			lines := strings.Split(msg, "\n")
			for _, w := range tt.want {
				if !containsLine(lines, w) {
					t.Errorf("EHLO lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tt.notWant {
				if containsLine(lines, w) {
					t.Errorf("EHLO has %q:\n%s", w, msg)
				}
			}
		})
	}
}

func containsLine(lines []string, w string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == w {
			return true
		}
	}
	return false
}

func bcryptHash(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func argonHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=1024,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func TestAuth(t *testing.T) {
	cfg := testSMTPConfig()
	cfg.Mynetworks = []string{"10.0.0.0/8"} // relay only after AUTH
	cfg.Users = []config.SMTPUser{
		{Name: "bc", PasswordHash: bcryptHash(t, "bc-secret")},
		{Name: "ar", PasswordHash: argonHash("ar-secret"), Stream: "marketing"},
	}
	e := startSMTP(t, cfg, nil)
	tests := []struct {
		name, mech, user, pass string
		ok                     bool
		stream                 string
	}{
		{"plain bcrypt", "PLAIN", "bc", "bc-secret", true, "transactional"},
		{"login bcrypt", "LOGIN", "bc", "bc-secret", true, "transactional"},
		{"plain argon2id", "PLAIN", "ar", "ar-secret", true, "marketing"},
		{"login argon2id", "LOGIN", "ar", "ar-secret", true, "marketing"},
		{"plain wrong password", "PLAIN", "bc", "bc-secreT", false, ""},
		{"login wrong password argon", "LOGIN", "ar", "nope", false, ""},
		{"unknown user", "PLAIN", "who", "bc-secret", false, ""},
		{"other user's password", "PLAIN", "ar", "bc-secret", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := smtp.Dial(e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var a sasl.Client
			if tt.mech == "PLAIN" {
				a = sasl.NewPlainClient("", tt.user, tt.pass)
			} else {
				a = sasl.NewLoginClient(tt.user, tt.pass)
			}
			err = c.Auth(a)
			if !tt.ok {
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
					t.Fatalf("auth err %v, want 535 5.7.8", err)
				}
				// Still unauthenticated: relay is refused.
				if err := c.Mail("a@example.org", nil); err != nil {
					t.Fatal(err)
				}
				err = c.Rcpt("x@example.com", nil)
				if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
					t.Fatalf("relay after failed auth: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("auth: %v", err)
			}
			if err := c.SendMail("a@example.org", []string{"x@example.com"}, strings.NewReader(simpleMsg)); err != nil {
				t.Fatalf("relay after auth: %v", err)
			}
		})
	}
	// The stream came from the user; the Received header says ESMTPA.
	infos, _, err := e.q.List(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 {
		t.Fatalf("%d recipients queued, want 4", len(infos))
	}
	streams := map[string]int{}
	for _, ri := range infos {
		mi, err := e.q.Message(ri.MsgID)
		if err != nil {
			t.Fatal(err)
		}
		streams[mi.Stream]++
		body, err := e.q.Body(ri.MsgID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(" with ESMTPA id ")) {
			t.Errorf("Received lacks ESMTPA:\n%s", body)
		}
	}
	if streams["transactional"] != 2 || streams["marketing"] != 2 {
		t.Errorf("streams %v", streams)
	}
}

func TestAllowAuthWithoutTLS(t *testing.T) {
	tests := []struct {
		addr       net.Addr
		requireTLS bool
		want       bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2525}, false, true},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 2525}, false, true},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 2525}, false, true},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2525}, true, false},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 587}, false, false},
		{&net.TCPAddr{IP: net.ParseIP("0.0.0.0"), Port: 587}, false, false},
		{&net.TCPAddr{IP: net.ParseIP("::"), Port: 587}, false, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 587}, false, false},
	}
	for _, tt := range tests {
		if got := allowAuthWithoutTLS(tt.addr, tt.requireTLS); got != tt.want {
			t.Errorf("allowAuthWithoutTLS(%v, %v) = %v, want %v", tt.addr, tt.requireTLS, got, tt.want)
		}
	}
}

// writeCertFiles writes a self-signed certificate and key as PEM files, so
// the test goes through the tls_cert/tls_key loading path.
func writeCertFiles(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	cert, err := testnet.SelfSigned("mx.petrel.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

// TestAuthRequiresTLS runs the real server with AUTH-before-TLS refused
// (what a non-loopback listener gets; the per-address decision itself is
// covered by TestAllowAuthWithoutTLS): no AUTH in EHLO, AUTH answered
// 523 5.7.10, and after STARTTLS AUTH works and mail is relayed.
func TestAuthRequiresTLS(t *testing.T) {
	certFile, keyFile, pool := writeCertFiles(t)
	cfg := testSMTPConfig()
	cfg.Mynetworks = []string{"10.0.0.0/8"}
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.Users = []config.SMTPUser{{Name: "u", PasswordHash: bcryptHash(t, "pw")}}
	e := startSMTP(t, cfg, func(o *Options) { o.RequireTLSForAuth = true })

	v := dial(t, e.addr)
	ehlo := v.cmd("EHLO client.test", 250, "STARTTLS")
	if strings.Contains(ehlo, "AUTH") {
		t.Fatalf("AUTH offered before TLS:\n%s", ehlo)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00u\x00pw"))
	v.cmd("AUTH PLAIN "+plain, 523, "5.7.10")
	v.cmd("MAIL FROM:<a@example.org>", 250, "")
	v.cmd("RCPT TO:<x@example.com>", 554, "5.7.1")
	v.cmd("QUIT", 221, "")

	c, err := smtp.DialStartTLS(e.addr, &tls.Config{ServerName: "mx.petrel.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("after STARTTLS AUTH=%v %q", ok, mechs)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "pw")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.org", []string{"x@example.com"}, strings.NewReader(simpleMsg)); err != nil {
		t.Fatal(err)
	}
	infos, _, err := e.q.List(context.Background(), "", 10)
	if err != nil || len(infos) != 1 {
		t.Fatalf("queued %d (%v)", len(infos), err)
	}
	body, err := e.q.Body(infos[0].MsgID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(" with ESMTPSA id ")) {
		t.Errorf("Received does not say ESMTPSA:\n%s", body)
	}
}

// TestOpenRelay: a client outside mynetworks without AUTH may reach only
// local_domains.
func TestOpenRelay(t *testing.T) {
	cfg := testSMTPConfig()
	cfg.Mynetworks = []string{"10.0.0.0/8", "192.168.0.0/16"}
	cfg.LocalDomains = []string{"Local.Test"}
	e := startSMTP(t, cfg, nil)
	tests := []struct {
		rcpt string
		code int
		want string
	}{
		{"x@example.com", 554, "5.7.1"},
		{"postmaster@gmail.com", 554, "Relay access denied"},
		{"x@sub.local.test", 554, "5.7.1"},
		{"x@[127.0.0.1]", 554, "5.7.1"},
		{"x@local.test.evil.com", 554, "5.7.1"},
		{"x@local.test", 250, ""},
		{"y@LOCAL.TEST", 250, ""},
	}
	v := dial(t, e.addr)
	v.cmd("EHLO outsider.test", 250, "")
	v.cmd("MAIL FROM:<spammer@example.org>", 250, "")
	for _, tt := range tests {
		v.cmd("RCPT TO:<"+tt.rcpt+">", tt.code, tt.want)
	}
	id := queuedID(t, v.data("From: spammer@example.org\r\nSubject: x\r\n\r\nhi\r\n", 250, "2.0.0"))
	mi, err := e.q.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range mi.Recipients {
		got = append(got, r.Addr)
	}
	if strings.Join(got, ",") != "x@local.test,y@LOCAL.TEST" {
		t.Fatalf("queued recipients %v", got)
	}
}

// TestBadInput: every bad input gets its reply and the session, and the
// server, keep serving.
func TestBadInput(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	big := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 70) // > 64 KiB
	tests := []struct {
		name string
		run  func(v *conv)
		// closes: the server ends the session after its reply (go-smtp
		// does so for overlong command lines).
		closes bool
	}{
		{"overlong line", func(v *conv) {
			v.cmd("NOOP "+strings.Repeat("a", 3000), 500, "5.4.0")
		}, true},
		{"bad sender syntax", func(v *conv) {
			v.cmd("MAIL FROM:<a..b@example.org>", 501, "5.1.3")
		}, false},
		{"bad recipient syntax", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<not an address>", 501, "")
			v.cmd("RCPT TO:<x@-bad-.com>", 501, "5.1.3")
			v.cmd("RCPT TO:<x@example..com>", 501, "5.1.3")
			v.cmd("RCPT TO:<ünï@example.com>", 501, "5.1.3")
		}, false},
		{"utf8 address with SMTPUTF8", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org> SMTPUTF8", 250, "")
			v.cmd("RCPT TO:<ünï@exämple.com>", 250, "")
			v.data("From: a@example.org\r\nSubject: é\r\n\r\nçà\r\n", 250, "queued as")
		}, false},
		{"too many recipients", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			for i := range 5 {
				v.cmd(fmt.Sprintf("RCPT TO:<r%d@example.com>", i), 250, "")
			}
			v.cmd("RCPT TO:<r5@example.com>", 452, "4.5.3")
			v.data(simpleMsg, 250, "queued as")
		}, false},
		{"size declared too big", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org> SIZE=100000000", 552, "5.3.4")
		}, false},
		{"huge message", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			v.data("Subject: big\r\n\r\n"+big, 552, "5.3.4")
		}, false},
		{"overlong line in DATA", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			v.data("Subject: long\r\n\r\n"+strings.Repeat("y", 1500)+"\r\nmore\r\n", 554, "5.6.0")
			v.cmd("NOOP", 500, "5.4.0") // go-smtp then closes the session
		}, true},
		{"8bit without 8BITMIME (accepted as Postfix does)", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			id := queuedID(v.t, v.data("Subject: x\r\n\r\ncaf\xc3\xa9\r\n", 250, "queued as"))
			if body, err := e.q.Body(id); err != nil || !bytes.HasSuffix(body, []byte("\r\n\r\ncaf\xc3\xa9\r\n")) {
				v.t.Fatalf("queued body %q (%v): the 8-bit body must be stored as it came", body, err)
			}
		}, false},
		{"8bit with 8BITMIME", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			v.data("Subject: x\r\n\r\ncaf\xc3\xa9\r\n", 250, "queued as")
		}, false},
		{"malformed header", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			v.data("this is not a header\r\n\r\nbody\r\n", 550, "5.6.0")
		}, false},
		{"bad stream header", func(v *conv) {
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			v.data("X-Petrel-Stream: no spaces allowed\r\n\r\nbody\r\n", 550, "X-Petrel-Stream")
		}, false},
		{"unknown command", func(v *conv) {
			v.cmd("FROBNICATE now", 501, "5.5.2")
			v.cmd("XYZW now", 500, "")
			v.cmd("MAIL FROM:<a@example.org> FROB=1 ", 500, "")
		}, false},
		{"commands out of order", func(v *conv) {
			v.cmd("RCPT TO:<b@example.com>", 502, "")
			v.cmd("DATA", 502, "")
		}, false},
		{"garbage MAIL", func(v *conv) {
			v.cmd("MAIL FROM:a@", 501, "")
			v.cmd("MAIL TO:<a@example.org>", 501, "")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			tt.run(v)
			if !tt.closes {
				// The same session still works ...
				v.cmd("RSET", 250, "")
				v.cmd("MAIL FROM:<a@example.org>", 250, "")
				v.cmd("RCPT TO:<b@example.com>", 250, "")
				queuedID(t, v.data(simpleMsg, 250, "2.0.0"))
				v.cmd("QUIT", 221, "")
			}
			// ... and so does a new client.
			w := dial(t, e.addr)
			w.cmd("EHLO again.test", 250, "")
			w.cmd("QUIT", 221, "")
		})
	}
	// huge message, overlong line, malformed header, bad stream header.
	if n := metricValue(t, e.reg, "petrel_ingest_messages_total", "smtp", resultRejected); n != 4 {
		t.Errorf("rejected counter %v, want 4", n)
	}
}

// TestQueuedDurably: the 250 carries the queue ID, and the stored body is
// the submitted one with trace headers on top.
func TestQueuedDurably(t *testing.T) {
	pol := &testPolicy{
		suppressed: map[string]string{
			"transactional gone@example.com": "hard_bounce",
			"marketing unsub@example.com":    "unsubscribe",
		},
		badSenders: map[string]bool{"unverified.test": true},
	}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	e := startSMTP(t, testSMTPConfig(), func(o *Options) {
		o.Policy = pol
		o.Now = func() time.Time { return now }
	})
	tests := []struct {
		name       string
		from       string
		rcpts      []string
		rcptCodes  []int
		msg        string
		code       int
		want       string
		stream     string
		queued     []string
		addedMsgID bool
	}{
		{name: "plain", from: "a@example.org", rcpts: []string{"b@example.com"}, rcptCodes: []int{250},
			msg: simpleMsg, code: 250, want: "queued as", stream: "transactional", queued: []string{"b@example.com"}, addedMsgID: true},
		{name: "keeps message-id and date", from: "a@example.org", rcpts: []string{"b@example.com", "c@example.net"}, rcptCodes: []int{250, 250},
			msg:  "Message-ID: <x@y>\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nFrom: a@example.org\r\n\r\nbody\r\n..dot line\r\n",
			code: 250, want: "queued as", stream: "transactional", queued: []string{"b@example.com", "c@example.net"}},
		{name: "suppressed at rcpt", from: "a@example.org", rcpts: []string{"gone@example.com", "b@example.com"}, rcptCodes: []int{550, 250},
			msg: simpleMsg, code: 250, want: "queued as", stream: "transactional", queued: []string{"b@example.com"}, addedMsgID: true},
		{name: "stream header", from: "a@example.org", rcpts: []string{"unsub@example.com", "b@example.com"}, rcptCodes: []int{250, 250},
			msg: "X-Petrel-Stream: Marketing\r\n" + simpleMsg, code: 250, want: "queued as", stream: "marketing", queued: []string{"b@example.com"}, addedMsgID: true},
		{name: "stream header all suppressed", from: "a@example.org", rcpts: []string{"unsub@example.com"}, rcptCodes: []int{250},
			msg: "X-Petrel-Stream: marketing\r\n" + simpleMsg, code: 550, want: "5.7.1"},
		{name: "unverified sender domain", from: "a@example.org", rcpts: []string{"b@example.com"}, rcptCodes: []int{250},
			msg: "From: x@unverified.test\r\n\r\nhi\r\n", code: 550, want: "5.7.26 sending domain unverified.test is unverified: DKIM record missing"},
		{name: "null sender", from: "", rcpts: []string{"b@example.com"}, rcptCodes: []int{250},
			msg: simpleMsg, code: 250, want: "queued as", stream: "transactional", queued: []string{"b@example.com"}, addedMsgID: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			v.cmd("MAIL FROM:<"+tt.from+">", 250, "")
			for i, r := range tt.rcpts {
				v.cmd("RCPT TO:<"+r+">", tt.rcptCodes[i], "")
			}
			reply := v.data(tt.msg, tt.code, tt.want)
			if tt.code != 250 {
				return
			}
			id := queuedID(t, reply)
			mi, err := e.q.Message(id)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range mi.Recipients {
				got = append(got, r.Addr)
			}
			if strings.Join(got, ",") != strings.Join(tt.queued, ",") || mi.Stream != tt.stream || mi.From != tt.from || mi.Source != "smtp" {
				t.Fatalf("queued %+v", mi)
			}
			body, err := e.q.Body(id)
			if err != nil {
				t.Fatal(err)
			}
			wantOrig := strings.ReplaceAll(tt.msg, "\r\n..", "\r\n.")
			wantOrig = strings.Replace(wantOrig, "X-Petrel-Stream: Marketing\r\n", "", 1)
			if !strings.HasSuffix(string(body), wantOrig) {
				t.Fatalf("stored body does not end with the submitted message:\n%s", body)
			}
			added := strings.TrimSuffix(string(body), wantOrig)
			if !strings.HasPrefix(added, "X-Test-Prepared: "+tt.stream+"\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.petrel.test (Petrel) with ESMTP id ") {
				t.Errorf("added headers:\n%s", added)
			}
			if strings.Contains(added, "X-Petrel-Stream") || strings.Contains(string(body), "X-Petrel-Stream") {
				t.Errorf("stream header kept")
			}
			if len(tt.queued) == 1 && !strings.Contains(added, "\tfor <"+tt.queued[0]+">;\r\n") {
				t.Errorf("Received lacks for clause:\n%s", added)
			}
			if !strings.Contains(added, "Wed, 04 Mar 2026 05:06:07 +0000") {
				t.Errorf("Received lacks date:\n%s", added)
			}
			if got := strings.Contains(added, "\r\nMessage-ID: <"); got != tt.addedMsgID {
				t.Errorf("Message-ID added=%v, want %v:\n%s", got, tt.addedMsgID, added)
			}
			if got := strings.Contains(added, "\r\nDate: "); got != tt.addedMsgID {
				t.Errorf("Date added=%v, want %v", got, tt.addedMsgID)
			}
		})
	}
	if n := metricValue(t, e.reg, "petrel_ingest_recipients_total", "smtp"); n != 6 {
		t.Errorf("recipients_total %v, want 6", n)
	}
}

// failingSpool is a Spool whose disk is gone.
type failingSpool struct{}

func (failingSpool) Enqueue(context.Context, queue.Envelope, []byte) (string, error) {
	return "", errors.New("pebble: disk full")
}

func (failingSpool) EnqueueBatch(context.Context, []queue.NewMessage) ([]string, error) {
	return nil, errors.New("pebble: disk full")
}

func TestEnqueueFailureIsTemporary(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), func(o *Options) { o.Spool = failingSpool{} })
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	v.cmd("MAIL FROM:<a@example.org>", 250, "")
	v.cmd("RCPT TO:<b@example.com>", 250, "")
	v.data(simpleMsg, 451, "4.3.0")
	if n := metricValue(t, e.reg, "petrel_ingest_messages_total", "smtp", resultError); n != 1 {
		t.Errorf("error counter %v", n)
	}
}

// TestShutdownFinishesTransaction: a transaction in progress when Shutdown
// starts still gets its 250 and is stored; idle sessions are closed, new
// connections refused, and Shutdown returns before its deadline.
func TestShutdownFinishesTransaction(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	idle := dial(t, e.addr)
	idle.cmd("EHLO idle.test", 250, "")
	done := dial(t, e.addr) // finished a transaction, now idle
	done.cmd("EHLO done.test", 250, "")
	done.cmd("MAIL FROM:<a@example.org>", 250, "")
	done.cmd("RCPT TO:<b@example.com>", 250, "")
	done.data(simpleMsg, 250, "queued as")
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	v.cmd("MAIL FROM:<a@example.org>", 250, "")
	v.cmd("RCPT TO:<b@example.com>", 250, "")
	v.cmd("DATA", 354, "")
	io.WriteString(v.c, "Subject: slow\r\n\r\nfirst half\r\n")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- e.srv.Shutdown(ctx)
	}()
	if !testnet.Wait(2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", e.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}) {
		t.Fatal("listener still accepting after Shutdown")
	}
	for _, c := range []*conv{idle, done} {
		if _, err := c.tp.ReadLine(); err == nil {
			t.Fatal("idle session still open after Shutdown")
		}
	}
	io.WriteString(v.c, "second half\r\n.\r\n")
	id := queuedID(t, v.expect(250, "2.0.0"))
	v.cmd("QUIT", 221, "")
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	body, err := e.q.Body(id)
	if err != nil || !bytes.HasSuffix(body, []byte("first half\r\nsecond half\r\n")) {
		t.Fatalf("body %q (%v)", body, err)
	}
}

// TestPipelining sends a whole transaction in one write.
func TestPipelining(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "PIPELINING")
	io.WriteString(v.c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<bad@@x>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
	v.expect(250, "")
	v.expect(250, "")
	v.expect(501, "5.1.3")
	v.expect(250, "")
	v.expect(354, "")
	io.WriteString(v.c, simpleMsg+".\r\nQUIT\r\n")
	id := queuedID(t, v.expect(250, ""))
	v.expect(221, "")
	mi, err := e.q.Message(id)
	if err != nil || len(mi.Recipients) != 2 {
		t.Fatalf("%+v %v", mi, err)
	}
}

// metricValue gathers reg and returns the counter (or histogram sample
// count) of name whose label values are labels, in label-name order.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for i, lp := range m.GetLabel() {
				if lp.GetValue() != labels[i] {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
