package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/mta"
)

// sessionError is a failure before a transaction started (connect,
// greeting, EHLO, STARTTLS): the next host is tried.
type sessionError struct {
	stage string
	reply *Reply // nil for local errors
	err   error
	// tlsFailed marks an opportunistic STARTTLS failure: the same address
	// may be retried without TLS.
	tlsFailed bool
}

func (e *sessionError) Error() string {
	if e.reply != nil {
		return fmt.Sprintf("%s: %s", e.stage, e.reply)
	}
	return fmt.Sprintf("%s: %v", e.stage, e.err)
}

func (e *sessionError) Unwrap() error { return e.err }

// timeouts of one SMTP client connection.
type timeouts struct {
	connect, command, data time.Duration
}

// smtpConn is one client connection to a remote MX.
type smtpConn struct {
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	ext     map[string]string
	tls     bool
	to      timeouts
	scratch []byte

	// Pool bookkeeping.
	key      poolKey
	mxHost   string
	permit   mta.ConnPermit
	msgs     int
	lastUsed time.Time
	closed   bool
	// broken: an I/O or protocol error happened; close without QUIT.
	broken bool
}

// sourceIP is the local address the connection left from (the egress
// source's bind address, or the one the system chose), "" when unknown.
func (c *smtpConn) sourceIP() string {
	if c.nc == nil {
		return ""
	}
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// dialSpec says how to open a connection.
type dialSpec struct {
	addr      netip.AddrPort
	serverTLS string // name for SNI / verification
	localIP   string
	ehlo      string
	tlsMode   mta.TLSMode
	verify    bool
	to        timeouts
}

// dial connects, reads the greeting, says EHLO and does STARTTLS as the
// spec's mode asks. Errors are *sessionError.
func dial(ctx context.Context, s dialSpec) (*smtpConn, error) {
	d := net.Dialer{Timeout: s.to.connect}
	if s.localIP != "" {
		ip := net.ParseIP(s.localIP)
		if ip == nil {
			return nil, &sessionError{stage: "connect", err: fmt.Errorf("bad egress address %q", s.localIP)}
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.DialContext(ctx, "tcp", s.addr.String())
	if err != nil {
		return nil, &sessionError{stage: "connect", err: err}
	}
	c := &smtpConn{
		nc:      nc,
		br:      bufio.NewReaderSize(nc, 4096),
		bw:      bufio.NewWriterSize(nc, 8192),
		to:      s.to,
		scratch: make([]byte, 0, 256),
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.handshake(s); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *smtpConn) handshake(s dialSpec) error {
	c.nc.SetDeadline(time.Now().Add(c.to.command))
	r, err := c.read()
	if err != nil {
		return &sessionError{stage: "greeting", err: err}
	}
	if r.Code != 220 {
		return &sessionError{stage: "greeting", reply: &r, err: errors.New(r.String())}
	}
	if err := c.hello(s.ehlo); err != nil {
		return err
	}
	_, offered := c.ext["STARTTLS"]
	switch {
	case s.tlsMode == mta.TLSDisabled:
		return nil
	case !offered && s.tlsMode == mta.TLSRequired:
		return &sessionError{stage: "starttls", err: errors.New("TLS required but STARTTLS not offered")}
	case !offered:
		return nil
	}
	fail := func(r *Reply, err error) error {
		return &sessionError{stage: "starttls", reply: r, err: err, tlsFailed: s.tlsMode == mta.TLSOpportunistic}
	}
	r, err = c.cmd("STARTTLS")
	if err != nil {
		return fail(nil, err)
	}
	if r.Code != 220 {
		return fail(&r, errors.New(r.String()))
	}
	cfg := &tls.Config{ServerName: s.serverTLS, InsecureSkipVerify: !s.verify, MinVersion: tls.VersionTLS12}
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		return fail(nil, fmt.Errorf("tls handshake: %w", err))
	}
	c.nc = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	c.tls = true
	return c.hello(s.ehlo)
}

// hello sends EHLO, falling back to HELO on a 5xx, and records extensions.
func (c *smtpConn) hello(name string) error {
	r, err := c.cmd("EHLO " + name)
	if err != nil {
		return &sessionError{stage: "ehlo", err: err}
	}
	c.ext = map[string]string{}
	if r.Code == 250 {
		lines := strings.Split(r.Text, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if r.Class() == 5 {
		r, err = c.cmd("HELO " + name)
		if err != nil {
			return &sessionError{stage: "helo", err: err}
		}
		if r.Code == 250 {
			return nil
		}
	}
	return &sessionError{stage: "ehlo", reply: &r, err: errors.New(r.String())}
}

func (c *smtpConn) read() (Reply, error) {
	r, s, err := readReply(c.br, c.scratch)
	c.scratch = s
	return r, err
}

// cmd sends one command and reads its reply.
func (c *smtpConn) cmd(line string) (Reply, error) {
	c.nc.SetDeadline(time.Now().Add(c.to.command))
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return Reply{}, fmt.Errorf("write: %w", err)
	}
	return c.read()
}

// has reports whether the server advertised extension kw (upper case).
func (c *smtpConn) has(kw string) bool {
	_, ok := c.ext[kw]
	return ok
}

// reset sends RSET; false means the connection is unusable.
func (c *smtpConn) reset() bool {
	r, err := c.cmd("RSET")
	return err == nil && r.Code == 250
}

// quit sends QUIT (briefly waiting for the reply) and closes.
func (c *smtpConn) quit() {
	if c.closed {
		return
	}
	c.closed = true
	if c.broken {
		c.nc.Close()
		return
	}
	c.nc.SetDeadline(time.Now().Add(time.Second))
	c.bw.WriteString("QUIT\r\n")
	if c.bw.Flush() == nil {
		c.read()
	}
	c.nc.Close()
}

// txResult is what one transaction produced.
type txResult struct {
	// mail is the MAIL FROM reply (Code 0 if none was read).
	mail Reply
	// rcpt[i] is the RCPT reply of recipient i (Code 0 if none was read).
	rcpt []Reply
	// data is the final reply after the message (Code 0 if none).
	data Reply
	// err is an I/O or protocol error that ended the transaction; the
	// connection must then be closed.
	err error
	// firstReplyRead is false when the connection failed before any reply
	// of this transaction (a pooled connection that died while idle).
	firstReplyRead bool
	// dataSent reports that the message body was (at least partly) sent.
	dataSent bool
}

// anyPermanent reports a 5xx to MAIL or any RCPT: such answers are kept
// even when the connection broke afterwards.
func (t *txResult) anyPermanent() bool {
	if t.mail.Class() == 5 {
		return true
	}
	for _, r := range t.rcpt {
		if r.Class() == 5 {
			return true
		}
	}
	return false
}

// mailParams builds the MAIL FROM parameters.
func (c *smtpConn) mailParams(from string, rcpts []string, body []byte) (string, error) {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(from)
	b.WriteByte('>')
	if c.has("SIZE") {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.Itoa(len(body)))
	}
	if c.has("8BITMIME") && eightbit.Has8bit(body) {
		b.WriteString(" BODY=8BITMIME")
	}
	utf8 := !isASCII(from)
	for _, r := range rcpts {
		utf8 = utf8 || !isASCII(r)
	}
	if utf8 {
		if !c.has("SMTPUTF8") {
			return "", errors.New("address needs SMTPUTF8, which the server does not offer")
		}
		b.WriteString(" SMTPUTF8")
	}
	return b.String(), nil
}

// transaction runs MAIL, RCPT..., DATA and the message. It pipelines the
// envelope when the server offers PIPELINING (RFC 2920).
func (c *smtpConn) transaction(ctx context.Context, mail string, rcpts []string, body []byte) txResult {
	res := txResult{rcpt: make([]Reply, len(rcpts))}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		if res.err != nil {
			c.broken = true
		}
	}()
	c.nc.SetDeadline(time.Now().Add(c.to.command))
	accepted := 0
	var dataReply Reply
	if c.has("PIPELINING") {
		c.bw.WriteString(mail)
		c.bw.WriteString("\r\n")
		for _, r := range rcpts {
			c.bw.WriteString("RCPT TO:<")
			c.bw.WriteString(r)
			c.bw.WriteString(">\r\n")
		}
		c.bw.WriteString("DATA\r\n")
		if err := c.bw.Flush(); err != nil {
			res.err = fmt.Errorf("write: %w", err)
			return res
		}
		var err error
		if res.mail, err = c.read(); err != nil {
			res.err = err
			return res
		}
		res.firstReplyRead = true
		for i := range rcpts {
			if res.rcpt[i], err = c.read(); err != nil {
				res.err = err
				return res
			}
			if res.rcpt[i].Class() == 2 {
				accepted++
			}
		}
		if dataReply, err = c.read(); err != nil {
			res.err = err
			return res
		}
		if res.mail.Class() != 2 {
			accepted = 0
		}
		if dataReply.Code == 354 && accepted == 0 {
			// RFC 2920: end the (empty) message the server now expects.
			c.nc.SetDeadline(time.Now().Add(c.to.command))
			if _, err := c.cmd("."); err != nil {
				res.err = err
			}
			return res
		}
	} else {
		var err error
		if res.mail, err = c.cmd(mail); err != nil {
			res.err = err
			return res
		}
		res.firstReplyRead = true
		if res.mail.Class() != 2 {
			return res
		}
		for i, r := range rcpts {
			if res.rcpt[i], err = c.cmd("RCPT TO:<" + r + ">"); err != nil {
				res.err = err
				return res
			}
			if res.rcpt[i].Class() == 2 {
				accepted++
			}
		}
		if accepted == 0 {
			return res
		}
		if dataReply, err = c.cmd("DATA"); err != nil {
			res.err = err
			return res
		}
	}
	if accepted == 0 {
		return res
	}
	if dataReply.Code != 354 {
		res.data = dataReply
		return res
	}
	c.nc.SetDeadline(time.Now().Add(c.to.data))
	res.dataSent = true
	if err := writeDotStuffed(c.bw, body); err != nil {
		res.err = fmt.Errorf("write data: %w", err)
		return res
	}
	r, err := c.read()
	if err != nil {
		res.err = fmt.Errorf("after data: %w", err)
		return res
	}
	res.data = r
	return res
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// badAddr reports an address that cannot be sent in a command safely.
func badAddr(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return true
		}
	}
	return false
}
