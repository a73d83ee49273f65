package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestDataBufferReuse sends messages of changing sizes over one session
// (the DATA buffer is reused from one message to the next, and sized
// from SIZE= when given): every queued body must end with exactly the
// message sent, nothing of a longer previous one.
func TestDataBufferReuse(t *testing.T) {
	cfg := testSMTPConfig()
	cfg.MaxMessageSize = 2 << 20
	e := startSMTP(t, cfg, nil)
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "")
	body := func(lines int, c byte) string {
		line := strings.Repeat(string(c), 70) + "\r\n"
		return "From: a@example.org\r\nSubject: s\r\n\r\n" + strings.Repeat(line, lines)
	}
	tests := []struct {
		name string
		msg  string
		size bool // announce SIZE=
	}{
		{"larger than the first buffer", body(400, 'a'), false},
		{"small after large", body(1, 'b'), false},
		{"SIZE announced", body(200, 'c'), true},
		{"SIZE understated", body(2000, 'd'), false},
		{"past the kept maximum", body(16000, 'e'), true},
		{"small again", body(2, 'f'), false},
		{"empty body", "From: a@example.org\r\nSubject: s\r\n\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v.t = t
			mail := "MAIL FROM:<a@example.org>"
			if tc.size {
				mail += fmt.Sprintf(" SIZE=%d", len(tc.msg))
			} else if tc.name == "SIZE understated" {
				mail += " SIZE=100"
			}
			v.cmd(mail, 250, "")
			v.cmd("RCPT TO:<r@example.com>", 250, "")
			id := queuedID(t, v.data(tc.msg, 250, "2.0.0"))
			got, err := e.q.Body(id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(got, []byte(tc.msg)) {
				t.Fatalf("queued body (%d bytes) does not end with the %d bytes sent", len(got), len(tc.msg))
			}
			if rest := got[:len(got)-len(tc.msg)]; !bytes.HasPrefix(rest, []byte("Received:")) || bytes.Contains(rest, []byte("\r\n\r\n")) {
				t.Fatalf("unexpected text before the message: %q", rest)
			}
		})
	}
}
