package bounce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/petrel-mta/petrel/internal/smtpserver"
)

// Handler receives one inbound report for one accepted recipient. The
// sender gets 250 only after every Handler call for the message returned
// nil; an error gives a temporary 451 so the remote retries.
type Handler func(ctx context.Context, rcpt string, raw []byte) error

// InboundConfig configures the SMTP listener for the bounce domain.
type InboundConfig struct {
	// Domain is the bounce domain: any local part @Domain is accepted.
	Domain string
	// FBLAddresses are extra full addresses accepted (feedback loops).
	FBLAddresses []string
	// Hostname is announced in the greeting.
	Hostname string
	// MaxMessageBytes limits a message; 0 means 10 MiB.
	MaxMessageBytes int64
	// MaxRecipients per message; 0 means 100.
	MaxRecipients int
	// ReadTimeout and WriteTimeout per command; 0 means 2 minutes.
	ReadTimeout, WriteTimeout time.Duration
	// Handler is called for each accepted message and recipient.
	Handler Handler
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Inbound is the SMTP server for the bounce domain. It accepts mail only
// for the bounce domain and the FBL addresses (no relay) and hands each
// message to the Handler.
type Inbound struct {
	cfg InboundConfig
	fbl map[string]bool
	log *slog.Logger
	// srv runs the go-smtp servers and Shutdown (shared with ingest).
	srv *smtpserver.Server
}

// NewInbound validates cfg and returns an Inbound ready to Serve.
func NewInbound(cfg InboundConfig) (*Inbound, error) {
	if cfg.Handler == nil {
		return nil, errors.New("bounce: inbound needs a Handler")
	}
	if cfg.Domain == "" && len(cfg.FBLAddresses) == 0 {
		return nil, errors.New("bounce: inbound needs a domain or FBL addresses")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 100
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 2 * time.Minute
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	in := &Inbound{cfg: cfg, fbl: map[string]bool{}, log: log.With("component", "bounce-inbound")}
	for _, a := range cfg.FBLAddresses {
		in.fbl[strings.ToLower(strings.TrimSpace(a))] = true
	}
	in.srv = smtpserver.New(inboundBackend{in}, in.configure, in.log)
	return in, nil
}

// ListenAndServe listens on addr and serves until Shutdown.
func (in *Inbound) ListenAndServe(addr string) error {
	if err := in.srv.ListenAndServe(addr); err != nil {
		return fmt.Errorf("bounce: inbound: %w", err)
	}
	return nil
}

// Serve accepts connections on ln until Shutdown; it then returns
// smtp.ErrServerClosed.
func (in *Inbound) Serve(ln net.Listener) error { return in.srv.Serve(ln) }

// configure sets up the go-smtp server of one listener.
func (in *Inbound) configure(srv *smtp.Server, ln net.Listener) {
	srv.Domain = in.cfg.Hostname
	srv.MaxMessageBytes = in.cfg.MaxMessageBytes
	srv.MaxRecipients = in.cfg.MaxRecipients
	srv.ReadTimeout = in.cfg.ReadTimeout
	srv.WriteTimeout = in.cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	in.log.Info("bounce inbound listening", "addr", ln.Addr().String(), "domain", in.cfg.Domain)
}

// Shutdown stops accepting, closes sessions between transactions, and
// waits for the others until ctx is done; then it closes the rest (their
// messages were never acknowledged).
func (in *Inbound) Shutdown(ctx context.Context) error {
	if err := in.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("bounce: inbound shutdown: %w", err)
	}
	return nil
}

// accepts reports whether rcpt is ours.
func (in *Inbound) accepts(rcpt string) bool {
	a := strings.ToLower(strings.TrimSpace(rcpt))
	if in.fbl[a] {
		return true
	}
	at := strings.LastIndexByte(a, '@')
	return at > 0 && in.cfg.Domain != "" && a[at+1:] == strings.ToLower(in.cfg.Domain)
}

type inboundBackend struct{ in *Inbound }

func (b inboundBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &inboundSession{in: b.in, remote: c.Conn().RemoteAddr().String()}
	s.untrack = b.in.srv.Track(c.Conn(), &s.busy)
	return s, nil
}

type inboundSession struct {
	in      *Inbound
	remote  string
	untrack func()
	// busy is set from MAIL FROM until the transaction ends (Shutdown
	// closes idle sessions only).
	busy  atomic.Bool
	from  string
	rcpts []string
}

var (
	errNoRelay = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relay access denied: this host only accepts mail for its bounce domain"}
	errHandler = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure processing the report, try again later"}
	errNoRcpt = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
)

func (s *inboundSession) Mail(from string, _ *smtp.MailOptions) error {
	s.busy.Store(true)
	s.from = from
	s.rcpts = s.rcpts[:0]
	return nil
}

func (s *inboundSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.in.accepts(to) {
		s.in.log.Debug("bounce inbound: relay refused", "remote", s.remote, "rcpt", to)
		return errNoRelay
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *inboundSession) Data(r io.Reader) error {
	if len(s.rcpts) == 0 {
		return errNoRcpt
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		return fmt.Errorf("bounce: inbound read: %w", err)
	}
	for _, rcpt := range s.rcpts {
		if err := s.in.cfg.Handler(s.in.srv.Context(), rcpt, raw); err != nil {
			s.in.log.Warn("bounce inbound: handler failed", "remote", s.remote, "rcpt", rcpt, "err", err)
			return errHandler
		}
	}
	s.in.log.Info("bounce inbound: report accepted", "remote", s.remote, "from", s.from, "rcpts", len(s.rcpts), "size", len(raw))
	return nil
}

func (s *inboundSession) Reset() {
	s.from = ""
	s.rcpts = nil
	s.busy.Store(false)
}

func (s *inboundSession) Logout() error {
	s.untrack()
	return nil
}
