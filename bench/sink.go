package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
)

// SinkOptions configures a counting sink.
type SinkOptions struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// TempFailPermille and PermFailPermille are the shares (per thousand
	// messages, deterministic by arrival order) answered 451 4.3.0 and
	// 554 5.7.1 at end of DATA instead of 250.
	TempFailPermille int
	PermFailPermille int
	// DKIMRecords, when not nil, turns on DKIM verification of every
	// message: it maps a TXT owner name ("sel._domainkey.example.com") to
	// its record ("v=DKIM1; k=rsa; p=..."). No DNS is used. A message is
	// counted as DKIM-pass when at least one signature verifies, as
	// DKIM-none when it has no signature, else as DKIM-fail.
	DKIMRecords map[string]string
	// CheckDuplicates keeps a digest of every accepted message (all its
	// bytes, so an MTA's own Received line with its queue id makes two
	// messages differ) and counts repeats as Duplicates: an MTA that
	// delivers one queued message twice delivers the same bytes twice.
	CheckDuplicates bool
	// TLSConfig, when set, makes the sink offer STARTTLS.
	TLSConfig *tls.Config
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
}

// SinkStats is a snapshot of a sink's counters.
type SinkStats struct {
	Messages   int64     `json:"messages"`
	Recipients int64     `json:"recipients"`
	Bytes      int64     `json:"bytes"`
	TempFailed int64     `json:"temp_failed"`
	PermFailed int64     `json:"perm_failed"`
	DKIMPass   int64     `json:"dkim_pass"`
	DKIMFail   int64     `json:"dkim_fail"`
	DKIMNone   int64     `json:"dkim_none"`
	Duplicates int64     `json:"duplicates"`
	Sessions   int64     `json:"sessions"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
}

// Sink is a counting SMTP server on loopback: it accepts messages, counts
// them and their recipients, and records first and last arrival times.
type Sink struct {
	opts SinkOptions
	srv  *smtp.Server
	ln   net.Listener
	done chan struct{}

	seq        atomic.Int64
	messages   atomic.Int64
	recipients atomic.Int64
	bytes      atomic.Int64
	tempFailed atomic.Int64
	permFailed atomic.Int64
	dkimPass   atomic.Int64
	dkimFail   atomic.Int64
	dkimNone   atomic.Int64
	duplicates atomic.Int64
	sessions   atomic.Int64
	first      atomic.Int64 // unix nanos of the first accepted message
	last       atomic.Int64 // unix nanos of the latest accepted message

	mu       sync.Mutex
	serveErr error
	seen     map[[16]byte]struct{}
}

// StartSink listens and serves until Close.
func StartSink(opts SinkOptions) (*Sink, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.TempFailPermille < 0 || opts.PermFailPermille < 0 || opts.TempFailPermille+opts.PermFailPermille > 1000 {
		return nil, fmt.Errorf("sink: fail shares %d+%d per mille out of range", opts.TempFailPermille, opts.PermFailPermille)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sink: listen: %w", err)
	}
	s := &Sink{opts: opts, ln: ln, done: make(chan struct{})}
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "sink.bench.test"
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 0
	srv.ReadTimeout = 60 * time.Second
	srv.WriteTimeout = 60 * time.Second
	srv.TLSConfig = opts.TLSConfig
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	s.srv = srv
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Addr is the sink's listening address ("127.0.0.1:port").
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Port is the sink's TCP port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the sink and closes open sessions.
func (s *Sink) Close() error {
	err := s.srv.Close()
	// go-smtp's Close closes only the listeners Serve has registered: a
	// Close right after StartSink, before the goroutine reached Serve,
	// left Serve accepting forever (petrel-bench's TestRun hung in CI
	// when petreld failed to start). Closing ours ends it either way.
	s.ln.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serveErr != nil {
		return fmt.Errorf("sink: serve: %w", s.serveErr)
	}
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("sink: close: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() SinkStats {
	st := SinkStats{
		Messages:   s.messages.Load(),
		Recipients: s.recipients.Load(),
		Bytes:      s.bytes.Load(),
		TempFailed: s.tempFailed.Load(),
		PermFailed: s.permFailed.Load(),
		DKIMPass:   s.dkimPass.Load(),
		DKIMFail:   s.dkimFail.Load(),
		DKIMNone:   s.dkimNone.Load(),
		Duplicates: s.duplicates.Load(),
		Sessions:   s.sessions.Load(),
	}
	if f := s.first.Load(); f != 0 {
		st.First = time.Unix(0, f)
	}
	if l := s.last.Load(); l != 0 {
		st.Last = time.Unix(0, l)
	}
	return st
}

// WaitMessages polls until the sink has accepted at least n messages, and
// returns the final snapshot, or ctx's error with the snapshot so far.
func (s *Sink) WaitMessages(ctx context.Context, n int64) (SinkStats, error) {
	return waitCount(ctx, func() (SinkStats, bool) {
		st := s.Stats()
		return st, st.Messages >= n
	})
}

func waitCount(ctx context.Context, probe func() (SinkStats, bool)) (SinkStats, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		st, ok := probe()
		if ok {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("sink: waiting: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Handler serves the counters as JSON (GET /stats), for a sink run as a
// separate process.
func (s *Sink) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	return mux
}

// lookupTXT answers DKIM key queries from the configured records.
func (s *Sink) lookupTXT(name string) ([]string, error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if rec, ok := s.opts.DKIMRecords[name]; ok {
		return []string{rec}, nil
	}
	return nil, fmt.Errorf("sink: no DKIM record for %s", name)
}

// dkimResult is the outcome of verifying one message.
type dkimResult int

const (
	dkimFail dkimResult = iota
	dkimPass
	dkimNone // no DKIM-Signature header
)

// verifyDKIM reports whether at least one signature of msg verifies.
func (s *Sink) verifyDKIM(msg []byte) dkimResult {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: s.lookupTXT, MaxVerifications: 5})
	if err != nil {
		return dkimFail
	}
	if len(vs) == 0 {
		return dkimNone
	}
	for _, v := range vs {
		if v.Err == nil {
			return dkimPass
		}
	}
	return dkimFail
}

type sinkBackend struct{ s *Sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.s.sessions.Add(1)
	return &sinkSession{s: b.s}, nil
}

type sinkSession struct {
	s     *Sink
	rcpts int64
	buf   bytes.Buffer
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { ss.rcpts = 0; return nil }

func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error { ss.rcpts++; return nil }

func (ss *sinkSession) Reset() { ss.rcpts = 0 }

func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.s
	var n int64
	var err error
	verify := s.opts.DKIMRecords != nil
	if verify || s.opts.CheckDuplicates {
		ss.buf.Reset()
		n, err = ss.buf.ReadFrom(r)
	} else {
		n, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return fmt.Errorf("sink: reading message: %w", err)
	}
	slot := int((s.seq.Add(1) - 1) % 1000)
	switch {
	case slot < s.opts.TempFailPermille:
		s.tempFailed.Add(1)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink: temporary failure (configured share)"}
	case slot < s.opts.TempFailPermille+s.opts.PermFailPermille:
		s.permFailed.Add(1)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sink: rejected (configured share)"}
	}
	if verify {
		switch s.verifyDKIM(ss.buf.Bytes()) {
		case dkimPass:
			s.dkimPass.Add(1)
		case dkimNone:
			s.dkimNone.Add(1)
		default:
			s.dkimFail.Add(1)
		}
	}
	if s.opts.CheckDuplicates {
		sum := sha256.Sum256(ss.buf.Bytes())
		var k [16]byte
		copy(k[:], sum[:])
		s.mu.Lock()
		if s.seen == nil {
			s.seen = map[[16]byte]struct{}{}
		}
		if _, dup := s.seen[k]; dup {
			s.duplicates.Add(1)
		}
		s.seen[k] = struct{}{}
		s.mu.Unlock()
	}
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	for {
		l := s.last.Load()
		if l >= now || s.last.CompareAndSwap(l, now) {
			break
		}
	}
	s.bytes.Add(n)
	s.recipients.Add(ss.rcpts)
	s.messages.Add(1)
	ss.rcpts = 0
	return nil
}
