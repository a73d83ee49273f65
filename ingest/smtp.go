package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/smtpserver"
	"github.com/petrel-mta/petrel/mta"
)

// Options configure NewSMTPServer.
type Options struct {
	// Hostname is the greeting name and the "by" of Received headers.
	Hostname string
	// SMTP is the [smtp] section.
	SMTP config.SMTPConfig
	// Submitter is the entry point messages go through; when nil,
	// NewSMTPServer builds one from Spool, Policy, Recipients and
	// SMTP.HopCountLimit.
	Submitter *Submitter
	// Spool is where accepted messages go (required without Submitter).
	Spool Spool
	// Policy may be nil: accept everything, sign nothing.
	Policy Policy
	// Recipients, if set, vets each RCPT (verify at ingest).
	Recipients RecipientChecker
	// Logger may be nil (slog.Default()).
	Logger *slog.Logger
	// Registry may be nil (no metrics).
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TLSConfig, when set, is used for STARTTLS instead of loading
	// SMTP.TLSCert/TLSKey.
	TLSConfig *tls.Config
	// RequireTLSForAuth refuses AUTH before STARTTLS even on loopback
	// listeners (by default loopback listeners allow it).
	RequireTLSForAuth bool

	// goSMTPData makes sessions read DATA through go-smtp's reader only,
	// not readDataDirect (tests compare the two paths).
	goSMTPData bool
}

// SMTPServer is the SMTP submission server. One SMTPServer may serve
// several listeners; each gets its own go-smtp server so the
// AUTH-before-TLS decision can differ per listener.
type SMTPServer struct {
	opts  Options
	p     *Submitter
	nets  []netip.Prefix
	local map[string]bool
	users map[string]config.SMTPUser
	tls   *tls.Config
	log   *slog.Logger
	// limits are the error and failed-AUTH limits (limits.go).
	limits *limits
	// postmaster receives RCPT TO:<postmaster> (postmaster.go).
	postmaster string

	// srv runs the go-smtp servers (one per listener) and Shutdown.
	srv *smtpserver.Server
	// base is cancelled when Shutdown gives up waiting, aborting in-flight
	// Policy/Enqueue calls.
	base context.Context
	// dataBufs holds DATA buffers (*[]byte) between messages: a session
	// takes one for a message and gives it back when Data returns (Submit
	// copies the message), so one connection per message does not mean
	// one fresh buffer per message.
	dataBufs sync.Pool
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = smtpserver.ErrServerClosed

// NewSMTPServer checks opts and builds a server; it does not listen yet.
func NewSMTPServer(opts Options) (*SMTPServer, error) {
	if opts.Spool == nil && opts.Submitter == nil {
		return nil, errors.New("ingest: Options.Spool or Options.Submitter is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	nets, err := opts.SMTP.Networks()
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	s := &SMTPServer{
		opts:  opts,
		nets:  nets,
		local: map[string]bool{},
		users: map[string]config.SMTPUser{},
		tls:   opts.TLSConfig,
		log:   opts.Logger.With("component", "ingest.smtp"),
	}
	for _, d := range opts.SMTP.LocalDomains {
		s.local[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	for _, u := range opts.SMTP.Users {
		s.users[u.Name] = u
	}
	if s.tls == nil && opts.SMTP.TLSCert != "" && opts.SMTP.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(opts.SMTP.TLSCert, opts.SMTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("ingest: smtp tls_cert/tls_key: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.p = opts.Submitter
	if s.p == nil {
		s.p = NewSubmitter(SubmitOptions{Hostname: opts.Hostname, Spool: opts.Spool, Policy: opts.Policy,
			Recipients: opts.Recipients, HopCountLimit: opts.SMTP.HopCountLimit, Logger: opts.Logger,
			Registry: opts.Registry, Now: opts.Now})
	}
	s.limits = newLimits(opts.SMTP, opts.Registry)
	if s.postmaster = opts.SMTP.Postmaster; s.postmaster == "" {
		s.postmaster = "postmaster@" + opts.Hostname
	}
	s.srv = smtpserver.New(&backend{s: s}, s.configure, s.log)
	s.base = s.srv.Context()
	return s, nil
}

// ListenAndServe listens on SMTP.Listen and serves until Shutdown.
func (s *SMTPServer) ListenAndServe() error {
	if err := s.srv.ListenAndServe(s.opts.SMTP.Listen); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// Serve accepts SMTP connections on ln until Shutdown; it then returns
// ErrServerClosed.
// The listener is wrapped by the RCPT TO:<postmaster> filter
// (postmaster.go).
// Sessions read DATA content straight from the connection
// (readDataDirect).
func (s *SMTPServer) Serve(ln net.Listener) error {
	return s.srv.Serve(postmasterListener{Listener: ln, direct: !s.opts.goSMTPData})
}

// configure sets up the go-smtp server of one listener.
func (s *SMTPServer) configure(srv *smtp.Server, ln net.Listener) {
	srv.Domain = s.opts.Hostname
	srv.MaxMessageBytes = s.opts.SMTP.MaxMessageSize
	srv.MaxRecipients = s.opts.SMTP.MaxRecipients
	srv.MaxLineLength = s.opts.SMTP.MaxLineLength
	srv.ReadTimeout = s.opts.SMTP.ReadTimeout.Duration
	srv.WriteTimeout = s.opts.SMTP.WriteTimeout.Duration
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = s.tls
	srv.AllowInsecureAuth = allowAuthWithoutTLS(ln.Addr(), s.opts.RequireTLSForAuth)
	s.log.Info("smtp listening", "addr", ln.Addr().String(), "auth_without_tls", srv.AllowInsecureAuth, "starttls", s.tls != nil)
}

// Shutdown stops accepting connections, closes sessions that are between
// transactions, and waits for the sessions in a transaction to finish it
// until ctx is done; then it closes the remaining connections, aborting
// unacknowledged transactions (their clients never got a 250).
func (s *SMTPServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// allowAuthWithoutTLS decides per listener whether AUTH is offered before
// STARTTLS: only on a loopback listener, and not when TLS is required.
func allowAuthWithoutTLS(addr net.Addr, requireTLS bool) bool {
	if requireTLS {
		return false
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr != nil && addr.Network() == "unix"
	}
	return tcp.IP.IsLoopback()
}

// inNetworks reports whether ip is in mynetworks.
func (s *SMTPServer) inNetworks(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// authenticate checks a username/password pair.
func (s *SMTPServer) authenticate(username, password string) (*config.SMTPUser, error) {
	u, ok := s.users[username]
	if !ok {
		return nil, smtp.ErrAuthFailed
	}
	if err := checkPassword(u.PasswordHash, password); err != nil {
		return nil, smtp.ErrAuthFailed // logged and counted by limitedSASL
	}
	return &u, nil
}

type backend struct{ s *SMTPServer }

// sessionStack is about the stack a session's goroutine reaches (its
// first spool read, at RCPT: Pebble's Get is deep).
const sessionStack = 16 << 10

// growStack grows the session goroutine's stack to hold sessionStack
// while it is still shallow (go-smtp starts a goroutine per connection
// with the runtime's small initial stack): one copy of a few frames,
// instead of copies of a deep stack, frame by frame, at RCPT.
//
//go:noinline
func growStack() {
	var pad [sessionStack]byte
	keepStack(pad[:])
}

//go:noinline
func keepStack(b []byte) { b[0] = 0 }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	growStack()
	sess := &session{s: b.s, conn: c}
	sess.untrack = b.s.srv.Track(c.Conn(), &sess.busy)
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		sess.ip = ap.Addr().Unmap()
		sess.trusted = b.s.inNetworks(sess.ip)
	}
	return sess, nil
}

// session is one SMTP connection's state.
type session struct {
	s    *SMTPServer
	conn *smtp.Conn
	// untrack ends the session's registration for Shutdown.
	untrack func()
	// busy is set from MAIL FROM until the transaction ends.
	busy    atomic.Bool
	ip      netip.Addr
	trusted bool // in mynetworks
	user    *config.SMTPUser
	// errs counts errors (failed AUTH included) and authFails failed AUTH
	// attempts, for the limits in limits.go; authUser is the user name of
	// the AUTH exchange in progress.
	errs, authFails int
	authUser        string

	mail     bool
	from     string
	mailOpts smtp.MailOptions
	rcpts    []string
	// data is the DATA buffer of the message being read, taken from and
	// given back to the server's dataBufs (the pipeline copies the message
	// before it returns) unless it grew past maxKeptData.
	data []byte
}

// putData gives the DATA buffer back to the server's pool.
func (se *session) putData() {
	if se.data == nil {
		return
	}
	b := se.data[:0]
	se.data = nil
	se.s.dataBufs.Put(&b)
}

// DATA buffer sizing: the first allocation of a session, and the largest
// buffer kept for its next message.
const (
	initialData = 16 << 10
	maxKeptData = 1 << 20
)

// readData reads the DATA stream into the session's buffer, sized up
// front from the SIZE parameter when the client gave one, so the common
// message is read without regrowing and copying its buffer.
func (se *session) readData(r io.Reader) ([]byte, error) {
	buf := se.data[:0]
	if se.data == nil {
		if p, ok := se.s.dataBufs.Get().(*[]byte); ok {
			buf = (*p)[:0]
		}
	}
	want := initialData
	if n := se.mailOpts.Size; n > 0 && n+1024 <= se.s.opts.SMTP.MaxMessageSize {
		want = max(want, int(n)+1024)
	}
	if cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	if pc, ok := se.conn.Conn().(*postmasterConn); ok {
		srv := se.conn.Server()
		if out, err, ok := pc.readDataDirect(buf, srv.MaxMessageBytes, srv.MaxLineLength); ok {
			if err != nil {
				return nil, err
			}
			if cap(out) <= maxKeptData {
				se.data = out
			}
			return out, nil
		}
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if cap(buf) <= maxKeptData {
		se.data = buf
	}
	return buf, nil
}

// SMTP replies ingest chooses (go-smtp produces the rest).
var (
	errTooLarge = smtp.ErrDataTooLarge // 552 5.3.4
	errHeader   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Malformed message header section (RFC 5322)"}
	errTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure, message not queued; try again later"}
	errNoSpace = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Insufficient system storage"}
	errNUL = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message contains a NUL byte; it is refused, not altered"}
	errLoop = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Routing loop detected: too many Received headers"}
)

func (se *session) stream() string {
	if se.user != nil && se.user.Stream != "" {
		return se.user.Stream
	}
	return DefaultStream
}

func (se *session) AuthMechanisms() []string {
	if len(se.s.users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// auth starts the SASL exchange for mech (Auth in limits.go wraps it).
func (se *session) auth(mech string) (sasl.Server, error) {
	login := func(username, password string) error {
		se.authUser = username
		u, err := se.s.authenticate(username, password)
		if err != nil {
			return err
		}
		se.user = u
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				se.authUser = username
				return errAuthzMismatch
			}
			return login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: login}, nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unsupported authentication mechanism"}
}

// Mail implements smtp.Session; refusals count against the session's
// error limit.
func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	return se.countError(se.mailFrom(from, opts))
}

func (se *session) mailFrom(from string, opts *smtp.MailOptions) error {
	if from != "" {
		if _, err := ParseMailbox(from, opts != nil && opts.UTF8); err != nil {
			return addrError("sender", from, err)
		}
	}
	if se.s.p.CheckSpace() != nil {
		return errNoSpace
	}
	se.busy.Store(true)
	se.mail, se.from, se.rcpts = true, from, nil
	se.mailOpts = smtp.MailOptions{}
	if opts != nil {
		se.mailOpts = *opts
	}
	return nil
}

// addrError is the 501 5.1.3 reply for a bad address.
func addrError(role, addr string, err error) error {
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: fmt.Sprintf("Bad %s address syntax: %s", role, err)}
}

// Rcpt implements smtp.Session; refusals count against the session's
// error limit.
func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return se.countError(se.rcptTo(to, opts))
}

func (se *session) rcptTo(to string, _ *smtp.RcptOptions) error {
	if isLocalPostmaster(to) {
		return se.rcptPostmaster()
	}
	m, err := ParseMailbox(to, se.mailOpts.UTF8)
	if err != nil {
		return addrError("recipient", to, err)
	}
	if se.user == nil && !se.trusted && !se.s.local[m.DomainKey()] {
		se.s.log.Info("relay denied", "client", se.ip.String(), "rcpt", to)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("<%s>: Relay access denied", to)}
	}
	if reason, ok := se.s.p.suppressed(se.stream(), to); ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("<%s>: recipient suppressed (%s)", to, reason)}
	}
	if reason, ok := se.s.p.rejected(se.s.base, to); ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2},
			Message: fmt.Sprintf("<%s>: recipient address rejected: %s", to, reason)}
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	defer se.putData()
	msg, err := se.readData(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			se.s.p.m.message("smtp", resultRejected)
			return errTooLarge
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// go-smtp's line limit is sticky: after this reply it closes
			// the connection.
			se.s.p.m.message("smtp", resultRejected)
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
				Message: fmt.Sprintf("Message has a line longer than %d octets; wrap it or use quoted-printable/base64", se.s.opts.SMTP.MaxLineLength)}
		}
		return fmt.Errorf("reading DATA: %w", err)
	}
	start := time.Now()
	// 8-bit data without BODY=8BITMIME is accepted as Postfix does (Python's
	// smtplib and swaks send it); delivery declares BODY=8BITMIME or
	// converts it to 7-bit per next hop (delivery/eightbit.go).
	with := "ESMTP"
	if _, ok := se.conn.TLSConnectionState(); ok {
		with += "S"
	}
	if se.user != nil {
		with += "A"
	}
	ip := "unknown"
	if se.ip.IsValid() {
		ip = se.ip.String()
	}
	timeout := se.s.opts.SMTP.WriteTimeout.Duration
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(se.s.base, timeout)
	defer cancel()
	res, err := se.s.p.Submit(ctx, Envelope{
		From: se.from, Rcpts: se.rcpts, Stream: se.stream(), HeaderStream: true, Source: "smtp",
		Trace:         Trace{Helo: se.conn.Hostname(), IP: ip, With: with},
		CheckedStream: se.stream(), Verified: true,
	}, msg)
	if err != nil {
		return se.dataError(err, res)
	}
	se.s.p.m.queued("smtp", len(res.Queued), start)
	se.accepted()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + res.ID}
}

// dataError maps a Submit error to the DATA reply.
func (se *session) dataError(err error, res Receipt) error {
	var senderErr *SenderError
	var scopeErr *ScopeError
	var temp *TemporaryError
	result := resultRejected
	var reply error
	switch {
	case errors.Is(err, ErrNUL):
		reply = errNUL
	case errors.Is(err, ErrLoop):
		reply = errLoop
	case errors.Is(err, ErrBadHeader):
		reply = errHeader
	case errors.Is(err, ErrBadStream):
		reply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Invalid " + StreamHeader + " value"}
	case errors.Is(err, ErrAllSuppressed):
		reply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("All recipients are suppressed in stream %s", res.Stream)}
	case errors.As(err, &senderErr):
		reply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 26}, Message: oneLine(senderErr.Error())}
	case errors.As(err, &scopeErr):
		reply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: oneLine(scopeErr.Error())}
	case errors.Is(err, mta.ErrInsufficientStorage):
		result, reply = resultError, errNoSpace
	case errors.As(err, &temp):
		result = resultError
		reply = errTemp
	default:
		result = resultError
		reply = errTemp
	}
	se.s.log.Warn("message not accepted", "client", se.ip.String(), "from", se.from, "err", err)
	se.s.p.m.message("smtp", result)
	return reply
}

// lineBreakSpaces turns CR and LF into spaces (oneLine).
var lineBreakSpaces = strings.NewReplacer("\r", " ", "\n", " ")

// oneLine makes s safe as SMTP reply text.
func oneLine(s string) string {
	return lineBreakSpaces.Replace(s)
}

func (se *session) Reset() {
	se.mail, se.from, se.rcpts = false, "", nil
	se.mailOpts = smtp.MailOptions{}
	se.busy.Store(false)
}

func (se *session) Logout() error {
	se.untrack()
	return nil
}
