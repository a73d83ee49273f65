package netx

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestStickyTimeouts: after a read timed out with a partial line
// buffered (which bufio.ReadLine returns as a line, dropping the error),
// the next read fails at once even under a fresh deadline.
func TestStickyTimeouts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sl := StickyTimeouts(ln)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := sl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client.Write([]byte("EH")) // a partial line, then silence
	r := bufio.NewReader(srv)
	srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	line, _, err := r.ReadLine()
	if err != nil || string(line) != "EH" {
		t.Fatalf("first ReadLine = %q, %v; want the partial line without error (bufio's behaviour)", line, err)
	}
	srv.SetReadDeadline(time.Now().Add(time.Hour))
	start := time.Now()
	_, _, err = r.ReadLine()
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("second ReadLine = %v after %v, want the sticky timeout at once", err, time.Since(start))
	}
	// A plain connection would block here for the new deadline: the
	// wrapper is what cuts it.
}
