// Package netx holds the small net.Listener wrappers petreld's servers
// share.
package netx

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
)

// Listen listens on TCP addr without TCP keepalive on the accepted
// connections (Go's default costs four setsockopt calls per connection):
// the SMTP servers end idle sessions by their read timeout instead.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// SMTP wraps an SMTP server's listener: replies are batched
// (BatchWrites) and read timeouts are sticky (StickyTimeouts).
func SMTP(ln net.Listener) net.Listener { return StickyTimeouts(BatchWrites(ln)) }

// maxBatch is the most BatchWrites holds before it writes anyway.
const maxBatch = 16 << 10

// BatchWrites wraps ln so that what the server writes to an accepted
// connection is held and sent in one write when the server next reads
// from it (or closes it). That is RFC 2920's rule for a server: it may
// hold replies while it reads the commands that follow, and must send
// them before it waits for more input; a server that reads only when it
// needs input (go-smtp, through a buffered reader) sends each batch of
// replies with one system call instead of one per reply line.
func BatchWrites(ln net.Listener) net.Listener { return &batchListener{ln} }

type batchListener struct{ net.Listener }

func (l *batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	bc := &batchConn{Conn: c}
	bc.buf = bc.small[:0]
	return bc, nil
}

type batchConn struct {
	net.Conn
	mu    sync.Mutex
	buf   []byte
	small [512]byte
	// err is the first failed write: later writes fail with it.
	err error
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf)+len(p) > maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= maxBatch {
			n, err := c.Conn.Write(p)
			c.err = err
			return n, err
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// flushLocked writes what is held.
func (c *batchConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	_, c.err = c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return c.err
}

// Read sends what is held, then reads.
func (c *batchConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Close sends what is held (unless a write is in progress in another
// goroutine: Close must not wait for a stuck client) and closes.
func (c *batchConn) Close() error {
	if c.mu.TryLock() {
		c.flushLocked()
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// StickyTimeouts wraps ln so that once a read of an accepted connection
// times out, every later read fails with that timeout too, whatever
// deadline is set afterwards.
//
// go-smtp sets a read deadline per command line, but reads lines through
// bufio.Reader.ReadLine, which returns the bytes read before a timeout as
// a line and drops the error: a client trickling one byte per interval
// then never times out (each partial line is a "501 Bad command" and a
// fresh deadline). With the timeout sticky, the next read fails, go-smtp
// answers "421 4.4.2 Idle timeout" and closes the connection.
func StickyTimeouts(ln net.Listener) net.Listener { return &stickyListener{ln} }

type stickyListener struct{ net.Listener }

func (l *stickyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stickyConn{Conn: c}, nil
}

type stickyConn struct {
	net.Conn
	mu      sync.Mutex
	timeout error
}

func (c *stickyConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.timeout
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		c.timeout = err
		c.mu.Unlock()
	}
	return n, err
}
