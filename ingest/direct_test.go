package ingest

import (
	"bytes"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// directPair is two servers over real queues, one reading DATA content
// with readDataDirect, one through go-smtp's reader, with small limits
// so that inputs reach them.
type directPair struct{ direct, gosmtp *smtpEnv }

func startDirectPair(t testing.TB) directPair {
	cfg := testSMTPConfig()
	cfg.MaxMessageSize = 600
	cfg.MaxLineLength = 60
	// Content whose end marker go-smtp does not see (".\r\r\n.\r\n")
	// ends in the read timeout on both.
	cfg.ReadTimeout.Duration = time.Second
	return directPair{
		direct: startSMTP(t, cfg, nil),
		gosmtp: startSMTP(t, cfg, func(o *Options) { o.goSMTPData = true }),
	}
}

const directHead = "From: a@example.org\r\nMessage-ID: <m@example.org>\r\nSubject: s\r\n\r\n"

var (
	queuedAs = regexp.MustCompile(`queued as [0-9A-Za-z]+`)
	tcpAddrs = regexp.MustCompile(`read tcp [^ ]+->[^ ]+: `)
)

// converse pipelines a whole session with content (then an end marker
// and QUIT) and returns the replies (queue IDs blanked) and the stored
// message from directHead on.
func converse(t *testing.T, e *smtpEnv, content []byte) (string, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var in bytes.Buffer
	in.WriteString("EHLO c.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n")
	in.WriteString(directHead)
	in.Write(content)
	in.WriteString("\r\n.\r\nQUIT\r\n")
	go c.Write(in.Bytes())
	replies, _ := io.ReadAll(c)
	var body []byte
	if m := queuedAs.Find(replies); m != nil {
		b, err := e.q.Body(strings.TrimPrefix(string(m), "queued as "))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte("From: a@example.org\r\n")); i >= 0 {
			body = b[i:]
		} else {
			body = b
		}
	}
	r := queuedAs.ReplaceAllString(string(replies), "queued as ID")
	return tcpAddrs.ReplaceAllString(r, "read tcp: "), body
}

func (p directPair) check(t *testing.T, content []byte) string {
	t.Helper()
	r1, b1 := converse(t, p.direct, content)
	r2, b2 := converse(t, p.gosmtp, content)
	if r1 != r2 {
		t.Fatalf("replies differ for %q:\ndirect: %q\ngo-smtp: %q", content, r1, r2)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("stored messages differ for %q:\ndirect: %q\ngo-smtp: %q", content, b1, b2)
	}
	return r1
}

// TestDirectDataMatchesGoSMTP: reading DATA content straight from the
// connection gives the replies and stored bytes go-smtp's reader gives,
// through dot-stuffing, bare CR/LF, the size limit (at and around it) and
// the line limit (then the connection is closed, as go-smtp does).
func TestDirectDataMatchesGoSMTP(t *testing.T) {
	p := startDirectPair(t)
	limit := 600 - len(directHead) - 2 // content + CRLF before the end marker
	tests := []struct{ name, content, reply string }{
		{"plain", "hello\r\nworld", "250 2.0.0"},
		{"dot stuffed", "..leading dot\r\n.\r\r\nx\r\n..", "250 2.0.0"},
		{"dot CR quirk", ".\rX\r\n.x", "250 2.0.0"},
		{"bare LF and CR", "a\nb\rc\r\r\n\n.\n", "250 2.0.0"},
		{"end marker inside", "a\r\n.\r\nMAIL FROM:<x@y.test>", "250 2.0.0"},
		{"just under size", strings.Repeat("x\r\n", limit/3-1), "250 2.0.0"},
		{"at size", strings.Repeat("x\r\n", limit/3) + strings.Repeat("x", limit%3), "552 5.3.4"},
		{"over size", strings.Repeat("y\r\n", 300), "552 5.3.4"},
		{"line at limit", strings.Repeat("z", 58), "250 2.0.0"},
		{"line over limit", strings.Repeat("z", 61), "554 5.6.0"},
		{"long line later", "ok\r\n" + strings.Repeat("w", 200) + "\r\nmore", "500 5.4.0"},
		{"empty", "", "250 2.0.0"},
		{"8bit", "caf\xc3\xa9 \xff", "250 2.0.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := p.check(t, []byte(tc.content)); !strings.Contains(r, tc.reply) {
				t.Fatalf("replies %q, want %q among them", r, tc.reply)
			}
		})
	}
}

func FuzzDirectData(f *testing.F) {
	for _, s := range []string{"hello", "..x\r\n.\r\n", ".\rX", "a\nb\rc", strings.Repeat("q", 70), "\r\n.\r\nRSET"} {
		f.Add([]byte(s))
	}
	p := startDirectPair(f)
	f.Fuzz(func(t *testing.T, content []byte) { p.check(t, content) })
}
