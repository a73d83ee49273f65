package netx

import (
	"bufio"
	"errors"
	"io"
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

// countingListener counts the writes its connections make.
type countingListener struct {
	net.Listener
	writes chan int
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes chan int
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes <- len(p)
	return c.Conn.Write(p)
}

// TestBatchWrites: replies written before a read reach the socket in one
// write, before the read; Close sends what is still held; a write larger
// than the batch goes out at once; the client sees every byte in order.
func TestBatchWrites(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writes := make(chan int, 100)
	bl := BatchWrites(countingListener{ln, writes})
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := bl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	expectWrites := func(want ...int) {
		t.Helper()
		for _, w := range want {
			select {
			case n := <-writes:
				if n != w {
					t.Fatalf("socket write of %d bytes, want %d", n, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no socket write, want one of %d bytes", w)
			}
		}
		select {
		case n := <-writes:
			t.Fatalf("unexpected socket write of %d bytes", n)
		default:
		}
	}
	for _, l := range []string{"250-a\r\n", "250-b\r\n", "250 c\r\n"} {
		if n, err := srv.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	expectWrites() // held
	client.Write([]byte("QUIT\r\n"))
	buf := make([]byte, 64)
	n, err := srv.Read(buf)
	if err != nil || string(buf[:n]) != "QUIT\r\n" {
		t.Fatalf("server Read = %q, %v", buf[:n], err)
	}
	expectWrites(21)
	big := make([]byte, maxBatch+1)
	srv.Write([]byte("x"))
	srv.Write(big)
	expectWrites(1, len(big))
	srv.Write([]byte("221 bye\r\n"))
	srv.Close()
	expectWrites(9)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	want := "250-a\r\n250-b\r\n250 c\r\nx" + string(big) + "221 bye\r\n"
	if string(got) != want {
		t.Fatalf("client read %d bytes, want %d", len(got), len(want))
	}
	if _, err := srv.Write([]byte("late")); err == nil {
		// Held, but the next flush fails.
		if _, err := srv.Read(buf); err == nil {
			t.Fatal("Read after Close succeeded")
		}
	}
}
