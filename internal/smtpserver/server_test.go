package smtpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// backend accepts everything; Data blocks until release is closed.
type backend struct {
	srv      *Server
	release  chan struct{}
	accepted atomic.Int64
}

type session struct {
	b       *backend
	busy    atomic.Bool
	untrack func()
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{b: b}
	s.untrack = b.srv.Track(c.Conn(), &s.busy)
	return s, nil
}

func (s *session) Mail(string, *smtp.MailOptions) error { s.busy.Store(true); return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	select {
	case <-s.b.release:
	case <-s.b.srv.Context().Done():
		return errors.New("aborted")
	}
	s.b.accepted.Add(1)
	return nil
}
func (s *session) Reset()        { s.busy.Store(false) }
func (s *session) Logout() error { s.untrack(); return nil }

func start(t *testing.T, n int) (*backend, []string, chan error) {
	t.Helper()
	b := &backend{release: make(chan struct{})}
	configured := 0
	b.srv = New(b, func(srv *smtp.Server, ln net.Listener) {
		configured++
		srv.Domain = "mx.test"
		srv.ReadTimeout = time.Minute
	}, slog.New(slog.DiscardHandler))
	done := make(chan error, n)
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		go func() { done <- b.srv.Serve(ln) }()
	}
	return b, addrs, done
}

func dial(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	return c
}

func cmd(t *testing.T, c *textproto.Conn, line string, code int) {
	t.Helper()
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadResponse(code); err != nil {
		t.Fatalf("%s: %v %s", line, err, msg)
	}
}

// TestShutdownGraceful: over two real listeners, Shutdown closes an idle
// session at once (go-smtp alone would wait for it to QUIT), lets a
// session inside DATA finish and get its 250, and then returns; Serve
// returns ErrServerClosed on both listeners and a later Serve refuses.
func TestShutdownGraceful(t *testing.T) {
	b, addrs, done := start(t, 2)
	idle := dial(t, addrs[0])
	cmd(t, idle, "EHLO client.test", 250)
	busy := dial(t, addrs[1])
	cmd(t, busy, "EHLO client.test", 250)
	cmd(t, busy, "MAIL FROM:<a@example.org>", 250)
	cmd(t, busy, "RCPT TO:<b@example.com>", 250)
	cmd(t, busy, "DATA", 354)
	if err := busy.PrintfLine("Subject: x\r\n\r\nbody\r\n."); err != nil {
		t.Fatal(err)
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- b.srv.Shutdown(ctx)
	}()
	// The idle session is closed promptly.
	idle.R.ReadString('\n') // may read a 421, then EOF
	if _, err := idle.ReadLine(); err == nil {
		t.Error("idle session still open during Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a transaction was open", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(b.release)
	if _, msg, err := busy.ReadResponse(250); err != nil {
		t.Fatalf("busy session: %v %s", err, msg)
	}
	busy.PrintfLine("QUIT")
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the transaction ended")
	}
	for range 2 {
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	}
	if b.accepted.Load() != 1 {
		t.Errorf("%d messages accepted, want 1", b.accepted.Load())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownDeadline: when ctx ends first, Context is cancelled (the
// session's work is aborted), the connection is closed without a 250, and
// Shutdown returns.
func TestShutdownDeadline(t *testing.T) {
	b, addrs, done := start(t, 1)
	c := dial(t, addrs[0])
	cmd(t, c, "EHLO client.test", 250)
	cmd(t, c, "MAIL FROM:<a@example.org>", 250)
	cmd(t, c, "RCPT TO:<b@example.com>", 250)
	cmd(t, c, "DATA", 354)
	c.PrintfLine("Subject: x\r\n\r\nbody\r\n.")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	b.srv.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if b.srv.Context().Err() == nil {
		t.Error("Context not cancelled")
	}
	code, msg, _ := c.ReadResponse(0)
	if code == 250 || strings.Contains(msg, "OK") && code/100 == 2 {
		t.Errorf("aborted transaction answered %d %s", code, msg)
	}
	if b.accepted.Load() != 0 {
		t.Error("message accepted")
	}
	<-done
}
