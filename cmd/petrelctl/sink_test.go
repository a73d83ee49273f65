package main

import (
	"context"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// lockedBuffer is an io.Writer safe for the sink's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSink: `petrelctl sink` accepts every message over real SMTP,
// prints one line per message with envelope, decoded subject and size,
// stores it with its envelope in -dir, and stops cleanly on its context.
func TestSink(t *testing.T) {
	port, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir := filepath.Join(t.TempDir(), "sink")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"sink", "-listen", addr, "-dir", dir}, &out, &errb) }()
	if !testnet.Wait(10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("sink not listening: %s", errb.String())
	}
	tests := []struct {
		from string
		to   []string
		msg  string
		line string
	}{
		{"a@x.test", []string{"b@y.test"}, "Subject: plain\r\n\r\nhi\r\n", `delivered to sink: from=<a@x.test> to=<b@y.test> subject="plain"`},
		{"", []string{"c@y.test", "d@y.test"}, "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nDSN\r\n", `delivered to sink: from=<> to=<c@y.test>,<d@y.test> subject="grüße"`},
	}
	for _, tc := range tests {
		if err := smtp.SendMail(addr, nil, tc.from, tc.to, []byte(tc.msg)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for _, tc := range tests {
		if !strings.Contains(out.String(), tc.line) {
			t.Errorf("output lacks %q:\n%s", tc.line, out.String())
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 2 {
		t.Fatalf("stored %d files, want 2", len(files))
	}
	b, _ := os.ReadFile(files[1])
	if !strings.HasPrefix(string(b), "X-Sink-Envelope-From: <>\r\nX-Sink-Envelope-To: <c@y.test>, <d@y.test>\r\nSubject: ") {
		t.Errorf("stored message:\n%s", b)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("sink exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sink did not stop")
	}
}
