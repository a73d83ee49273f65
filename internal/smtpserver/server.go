// Package smtpserver is the one wrapper around emersion/go-smtp's server
// that Petrel's SMTP listeners share (ingest's submission listener and
// bounce's inbound listener for the bounce domain and FBL addresses): one
// go-smtp server per listener, configured per listener, and one graceful
// Shutdown for all of them.
//
// Shutdown stops accepting, closes the connections of sessions that are
// not inside a transaction (go-smtp's own Shutdown would wait for idle
// clients to QUIT), waits for the sessions inside one to finish it until
// its context is done, then cancels Context and closes what is left: those
// transactions were never acknowledged, so their clients retry.
package smtpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = smtp.ErrServerClosed

// Server serves one go-smtp Backend on any number of listeners.
type Server struct {
	backend   smtp.Backend
	configure func(srv *smtp.Server, ln net.Listener)
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	servers  []*smtp.Server
	sessions map[*tracked]struct{}
	closed   bool
}

// tracked is one session Shutdown may close when it is idle.
type tracked struct {
	conn net.Conn
	busy *atomic.Bool
}

// New returns a Server for backend. configure, called once per listener
// before serving, sets the go-smtp server's options (Domain, limits,
// timeouts, TLS, AllowInsecureAuth...); ErrorLog defaults to log.
func New(backend smtp.Backend, configure func(srv *smtp.Server, ln net.Listener), log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{backend: backend, configure: configure, log: log, sessions: map[*tracked]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Context is cancelled when Shutdown gives up waiting: sessions pass it to
// the work they do for a message so that work is aborted too.
func (s *Server) Context() context.Context { return s.ctx }

// ListenAndServe listens on addr (TCP) and serves until Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts SMTP connections on ln until Shutdown; it then returns
// ErrServerClosed (also when Shutdown came first, closing ln).
func (s *Server) Serve(ln net.Listener) error {
	srv := smtp.NewServer(s.backend)
	srv.ErrorLog = slogAdapter{s.log}
	if s.configure != nil {
		s.configure(srv, ln)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(ln)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed && (err == nil || errors.Is(err, net.ErrClosed)) {
		return ErrServerClosed // go-smtp returns nil after its Shutdown
	}
	return err
}

// Track registers a session's connection so that Shutdown closes it while
// busy is false (between transactions). The session calls the returned
// function when it ends (Logout). A session that starts during Shutdown
// is closed at once.
func (s *Server) Track(conn net.Conn, busy *atomic.Bool) (untrack func()) {
	t := &tracked{conn: conn, busy: busy}
	s.mu.Lock()
	s.sessions[t] = struct{}{}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		conn.Close()
	}
	return func() {
		s.mu.Lock()
		delete(s.sessions, t)
		s.mu.Unlock()
	}
}

// Shutdown stops every listener, closes idle tracked sessions, and waits
// for the others until ctx is done; then it cancels Context and closes
// the remaining connections, aborting unacknowledged transactions.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.mu.Unlock()
	errs := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errs <- srv.Shutdown(ctx) }()
	}
	var first error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	s.closeIdle()
	for pending := len(servers); pending > 0; {
		select {
		case err := <-errs:
			pending--
			if err != nil && first == nil && !errors.Is(err, smtp.ErrServerClosed) {
				first = err
			}
		case <-tick.C:
			s.closeIdle() // sessions that finished their transaction since
		}
	}
	if ctx.Err() != nil {
		s.cancel()
		for _, srv := range servers {
			srv.Close()
		}
	}
	s.cancel()
	return first
}

// closeIdle closes the connections of tracked sessions not inside a
// transaction. It closes the socket, not the go-smtp Conn, so go-smtp's
// read loop ends the session itself. A client that starts a transaction
// concurrently loses it before any 250, which it will retry.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.sessions {
		if !t.busy.Load() {
			t.conn.Close()
		}
	}
}

// slogAdapter lets go-smtp log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }
