package testnet

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one message an MX accepted.
type Mail struct {
	From  string
	Rcpts []string
	Data  []byte
	// Conn is the sequence number (from 1) of the connection it came on.
	Conn int
	// TLS reports whether the connection had done STARTTLS.
	TLS  bool
	Time time.Time
	// Body is the MAIL FROM BODY= parameter ("" when none was given).
	Body string
}

// MXScript decides replies. Any nil func accepts. A returned error should
// be an *smtp.SMTPError to choose the code; ErrDrop closes the connection
// without a reply.
type MXScript struct {
	// OnConnect runs when a client connects; an error is sent as the
	// greeting failure (e.g. 421) and the connection closes.
	OnConnect func(conn int) error
	// OnMail runs on MAIL FROM.
	OnMail func(from string) error
	// OnRcpt runs on each RCPT TO; attempt counts RCPTs of this address
	// seen so far (from 1), so "450 then 250" is easy.
	OnRcpt func(rcpt string, attempt int) error
	// OnData runs after the message is read, before it is recorded.
	OnData func(from string, rcpts []string, data []byte) error
}

// ErrDrop makes the MX close the connection instead of replying.
var ErrDrop = errors.New("testnet: drop connection")

// MX is a scriptable SMTP server playing a recipient MX host.
type MX struct {
	// Addr is the listener address "127.0.0.N:port".
	Addr string

	script atomic.Pointer[MXScript]
	srv    *smtp.Server
	ln     net.Listener
	no8bit bool

	mu       sync.Mutex
	mails    []Mail
	attempts map[string]int

	conns, active, maxActive atomic.Int64
	perConn                  sync.Map // conn -> *atomic.Int64 messages
}

// MXOptions configure StartMX.
type MXOptions struct {
	// Addr to listen on; default "127.0.0.1:0". Use 127.0.0.N:port to
	// put several MX hosts on one port (delivery.smtp_port).
	Addr string
	// TLS offers STARTTLS with a self-signed certificate.
	TLS bool
	// Domain is the server's greeting name.
	Domain string
	// NoSMTPUTF8 stops the server advertising SMTPUTF8 (RFC 6531).
	NoSMTPUTF8 bool
	// No8BitMIME makes a strict 7-bit MX: it does not advertise 8BITMIME
	// (RFC 6152), refuses MAIL FROM with BODY=8BITMIME (555 5.5.4) and
	// refuses a message with any octet above 127 unless MAIL FROM said
	// SMTPUTF8 (554 5.6.0). It cannot be combined with TLS (the EHLO reply
	// is filtered on the clear-text connection).
	No8BitMIME bool
	// NoPipelining is not supported by go-smtp's server (it always
	// advertises PIPELINING); kept out on purpose.
	Script MXScript
}

// StartMX starts an MX server.
func StartMX(o MXOptions) (*MX, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Domain == "" {
		o.Domain = "mx.test"
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("testnet: mx listen %s: %w", o.Addr, err)
	}
	if o.No8BitMIME && o.TLS {
		ln.Close()
		return nil, errors.New("testnet: No8BitMIME cannot be combined with TLS")
	}
	m := &MX{Addr: ln.Addr().String(), ln: ln, attempts: map[string]int{}, no8bit: o.No8BitMIME}
	s := o.Script
	m.script.Store(&s)
	srv := smtp.NewServer(m)
	srv.Domain = o.Domain
	srv.MaxRecipients = 10000
	srv.MaxMessageBytes = 64 << 20
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = !o.NoSMTPUTF8
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	if o.TLS {
		cert, err := SelfSigned(o.Domain)
		if err != nil {
			ln.Close()
			return nil, err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	m.srv = srv
	if o.No8BitMIME {
		go srv.Serve(no8bitListener{ln})
	} else {
		go srv.Serve(ln)
	}
	return m, nil
}

// SetScript replaces the script for new commands.
func (m *MX) SetScript(s MXScript) { m.script.Store(&s) }

// Close stops the server and closes its connections.
func (m *MX) Close() error { return m.srv.Close() }

// Mails returns a copy of everything accepted so far.
func (m *MX) Mails() []Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mail(nil), m.mails...)
}

// Count returns the number of accepted messages.
func (m *MX) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.mails)
}

// Conns returns how many connections were opened, and the most that
// were open at once.
func (m *MX) Conns() (total, maxConcurrent int) {
	return int(m.conns.Load()), int(m.maxActive.Load())
}

// Active returns the number of open connections now.
func (m *MX) Active() int { return int(m.active.Load()) }

// NewSession implements smtp.Backend.
func (m *MX) NewSession(c *smtp.Conn) (smtp.Session, error) {
	n := int(m.conns.Add(1))
	a := m.active.Add(1)
	for {
		old := m.maxActive.Load()
		if a <= old || m.maxActive.CompareAndSwap(old, a) {
			break
		}
	}
	s := &mxSession{m: m, c: c, conn: n}
	if f := m.script.Load().OnConnect; f != nil {
		if err := f(n); err != nil {
			m.active.Add(-1)
			if errors.Is(err, ErrDrop) {
				c.Conn().Close()
			}
			return nil, err
		}
	}
	return s, nil
}

type mxSession struct {
	m     *MX
	c     *smtp.Conn
	conn  int
	from  string
	opts  smtp.MailOptions
	rcpts []string
	done  bool
}

func (s *mxSession) drop(err error) error {
	if errors.Is(err, ErrDrop) {
		s.c.Conn().Close()
	}
	return err
}

func (s *mxSession) Mail(from string, opts *smtp.MailOptions) error {
	s.opts = smtp.MailOptions{}
	if opts != nil {
		s.opts = *opts
	}
	if s.m.no8bit && s.opts.Body != "" && s.opts.Body != smtp.Body7Bit {
		return Reply(555, "5.5.4", "BODY="+string(s.opts.Body)+" not supported here")
	}
	if f := s.m.script.Load().OnMail; f != nil {
		if err := f(from); err != nil {
			return s.drop(err)
		}
	}
	s.from, s.rcpts = from, nil
	return nil
}

func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	s.m.attempts[strings.ToLower(to)]++
	n := s.m.attempts[strings.ToLower(to)]
	s.m.mu.Unlock()
	if f := s.m.script.Load().OnRcpt; f != nil {
		if err := f(to, n); err != nil {
			return s.drop(err)
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.m.no8bit && !s.opts.UTF8 && bytes.ContainsFunc(data, func(r rune) bool { return r >= 0x80 }) {
		return Reply(554, "5.6.0", "8-bit data refused: this server does not offer 8BITMIME")
	}
	if f := s.m.script.Load().OnData; f != nil {
		if err := f(s.from, s.rcpts, data); err != nil {
			return s.drop(err)
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, Mail{From: s.from, Rcpts: append([]string(nil), s.rcpts...),
		Data: bytes.Clone(data), Conn: s.conn, TLS: isTLS, Time: time.Now(), Body: string(s.opts.Body)})
	s.m.mu.Unlock()
	return nil
}

func (s *mxSession) Reset() { s.from, s.rcpts, s.opts = "", nil, smtp.MailOptions{} }

// no8bitListener hands out connections whose EHLO reply lacks 8BITMIME.
type no8bitListener struct{ net.Listener }

func (l no8bitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return no8bitConn{c}, nil
}

// no8bitConn drops the "250-8BITMIME" line go-smtp always advertises; its
// textproto writer flushes every reply line in a Write of its own.
type no8bitConn struct{ net.Conn }

func (c no8bitConn) Write(p []byte) (int, error) {
	if string(p) == "250-8BITMIME\r\n" {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (s *mxSession) Logout() error {
	if !s.done {
		s.done = true
		s.m.active.Add(-1)
	}
	return nil
}

// Reply builds an *smtp.SMTPError reply such as Reply(550, "5.1.1",
// "user unknown"); enhanced may be "".
func Reply(code int, enhanced, text string) error {
	e := &smtp.SMTPError{Code: code, Message: text}
	if enhanced != "" {
		var a, b, c int
		fmt.Sscanf(enhanced, "%d.%d.%d", &a, &b, &c)
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
	} else {
		e.EnhancedCode = smtp.NoEnhancedCode
	}
	return e
}

// SelfSigned makes a throw-away ECDSA certificate for host.
func SelfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testnet: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testnet: cert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// FreePort returns a TCP port that is free on 127.0.0.1 at the time of the
// call, for servers that must share one port across 127.0.0.N addresses.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testnet: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
