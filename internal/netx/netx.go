// Package netx holds the small net.Listener wrappers petreld's servers
// share.
package netx

import (
	"errors"
	"net"
	"os"
	"sync"
)

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
