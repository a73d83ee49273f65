package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// queuedRcpts returns the recipients queued for message id.
func queuedRcpts(t *testing.T, e *smtpEnv, id string) []string {
	t.Helper()
	infos, _, err := e.q.List(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ri := range infos {
		if ri.MsgID == id {
			out = append(out, ri.Addr)
		}
	}
	return out
}

// TestPostmaster: RCPT TO:<postmaster> (any case, no domain) is accepted
// from a client that may not relay and queued for the configured
// postmaster address, which the client cannot change; other recipients
// are still refused (no open relay).
func TestPostmaster(t *testing.T) {
	tests := []struct {
		name, postmaster, rcpt, want string
	}{
		{"configured", "ops@example.net", "RCPT TO:<postmaster>", "ops@example.net"},
		{"upper case, space after colon", "ops@example.net", "RCPT TO: <PostMaster>", "ops@example.net"},
		{"default is postmaster@hostname", "", "rcpt to:<postmaster>", "postmaster@mx.petrel.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testSMTPConfig()
			cfg.Mynetworks = []string{"10.0.0.0/8"} // the loopback client may not relay
			cfg.Postmaster = tt.postmaster
			e := startSMTP(t, cfg, nil)
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd(tt.rcpt, 250, "")
			v.cmd("RCPT TO:<"+tt.want+">", 554, "Relay access denied")
			v.cmd("RCPT TO:<x@example.com>", 554, "Relay access denied")
			v.cmd("RCPT TO:<postmaster@example.com>", 554, "Relay access denied")
			id := queuedID(t, v.data(simpleMsg, 250, "queued as"))
			if got := queuedRcpts(t, e, id); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("queued for %v, want [%s]", got, tt.want)
			}
		})
	}
}

// TestPostmasterLineInContent: a "RCPT TO:<postmaster>" line inside
// message content (DATA, pipelined DATA, a line go-smtp does not take as
// the end of DATA, a BDAT chunk) reaches the queue unchanged.
func TestPostmasterLineInContent(t *testing.T) {
	e := startSMTP(t, testSMTPConfig(), nil)
	const trap = "RCPT TO:<postmaster>\r\n"
	body := "Subject: smtp howto\r\n\r\nType this:\r\n" + trap + "and then DATA\r\nDATA\r\nBDAT 5\r\n"
	tests := []struct {
		name string
		// send writes the transaction after MAIL and RCPT were accepted
		// and returns the final reply text.
		send func(v *conv) string
		// want is the content expected at the end of the queued message.
		want string
	}{
		{"DATA", func(v *conv) string { return v.data(body, 250, "queued as") }, body},
		{"pipelined DATA", func(v *conv) string {
			io.WriteString(v.c, "DATA\r\n"+body+".\r\n")
			v.expect(354, "")
			return v.expect(250, "queued as")
		}, body},
		{"CR CR LF dot is not the end", func(v *conv) string {
			return v.data("Subject: x\r\n\r\nline\r\r\n.\r\n"+trap, 250, "queued as")
		}, "line\r\r\n.\r\n" + trap},
		{"BDAT", func(v *conv) string {
			chunk := body
			fmt.Fprintf(v.c, "BDAT %d LAST\r\n%s", len(chunk), chunk)
			return v.expect(250, "queued as")
		}, body[strings.Index(body, "\r\n\r\n")+4:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := dial(t, e.addr)
			v.cmd("EHLO client.test", 250, "")
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<b@example.com>", 250, "")
			id := queuedID(t, tt.send(v))
			got, err := e.q.Body(id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(got, []byte(tt.want)) {
				t.Fatalf("queued content changed:\n%q\nwant suffix\n%q", got, tt.want)
			}
			// The session still knows a command when it sees one.
			v.cmd("MAIL FROM:<a@example.org>", 250, "")
			v.cmd("RCPT TO:<postmaster>", 250, "")
			queuedID(t, v.data(simpleMsg, 250, "queued as"))
		})
	}
}

// TestPostmasterAfterSTARTTLS: over a real STARTTLS session on loopback,
// the bare form is accepted inside TLS too and queued for the configured
// postmaster (go-smtp v0.25 answered it 501 there, and the clear-text
// filter Petrel had in front of go-smtp could not see inside TLS); other
// recipients are still refused, and the session really is TLS.
func TestPostmasterAfterSTARTTLS(t *testing.T) {
	cert, err := testnet.SelfSigned("mx.petrel.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSMTPConfig()
	cfg.Mynetworks = []string{"10.0.0.0/8"} // the loopback client may not relay
	cfg.Postmaster = "ops@example.net"
	e := startSMTP(t, cfg, func(o *Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	v := dial(t, e.addr)
	v.cmd("EHLO client.test", 250, "STARTTLS")
	v.cmd("STARTTLS", 220, "")
	tc := tls.Client(v.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	w := &conv{t: t, c: tc, tp: textproto.NewConn(tc)}
	if ehlo := w.cmd("EHLO client.test", 250, ""); strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO inside TLS still offers STARTTLS: %q", ehlo)
	}
	w.cmd("MAIL FROM:<a@example.org>", 250, "")
	w.cmd("RCPT TO:<PostMaster>", 250, "")
	w.cmd("RCPT TO:<b@example.com>", 554, "Relay access denied")
	w.cmd("RCPT TO:<postmaster@example.com>", 554, "Relay access denied")
	id := queuedID(t, w.data("Subject: x\r\n\r\n"+"RCPT TO:<postmaster>\r\n", 250, "queued as"))
	if got := queuedRcpts(t, e, id); len(got) != 1 || got[0] != "ops@example.net" {
		t.Fatalf("queued for %v, want [ops@example.net]", got)
	}
}

// fakeConn is a net.Conn reading from a fixed client stream; writes (the
// server's replies) go to a script that can react to them.
type fakeConn struct {
	net.Conn
	r io.Reader
}

func (f fakeConn) Read(p []byte) (int, error)     { return f.r.Read(p) }
func (fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (fakeConn) Close() error                     { return nil }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (fakeConn) SetDeadline(time.Time) error      { return nil }
func (fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// FuzzPostmasterConn: whatever a client sends (and whatever replies the
// server writes in between), the filter never panics, never loses or adds
// bytes except by rewriting a bare postmaster path, and so passes a
// stream without "postmaster" through unchanged.
func FuzzPostmasterConn(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<postmaster>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"), []byte{0, 2, 4})
	f.Add([]byte("BDAT 4 LAST\r\nabcdRCPT TO:<postmaster>\r\n"), []byte{1})
	f.Add([]byte("STARTTLS\r\n\x16\x03\x01"), []byte{3})
	f.Fuzz(func(t *testing.T, in, replies []byte) {
		c := newPostmasterConn(fakeConn{r: bytes.NewReader(in)}, false)
		var out bytes.Buffer
		buf := make([]byte, 7) // short reads exercise the pending path
		for i := 0; ; i++ {
			// Between reads the "server" answers: 354, 220, 250 or a
			// partial line, driven by the fuzzer.
			if i < len(replies) {
				c.Write([][]byte{[]byte("354 go\r\n"), []byte("220 tls\r\n"), []byte("250 ok\r\n"), []byte("250-pa")}[replies[i]%4])
			}
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil || i > len(in)+len(replies)+10 {
				break
			}
		}
		if !bytes.Contains(bytes.ToLower(in), []byte("postmaster")) && !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("stream changed:\n%q\n%q", in, out.Bytes())
		}
		if got := bytes.ReplaceAll(out.Bytes(), []byte(postmasterSentinel), nil); len(out.Bytes()) < len(in)-len("postmaster")*bytes.Count(bytes.ToLower(in), []byte("postmaster")) {
			t.Fatalf("bytes lost: %d in, %d out (%d without sentinels)", len(in), out.Len(), len(got))
		}
	})
}

// BenchmarkPostmasterConn measures the filter's cost per message: one
// transaction's commands and a 2.4 KB body read through it in go-smtp's
// 4 KiB reads.
func BenchmarkPostmasterConn(b *testing.B) {
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 40)
	tx := []byte("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + body + ".\r\n")
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(tx)))
	for b.Loop() {
		c := newPostmasterConn(fakeConn{r: bytes.NewReader(tx)}, false)
		for i := 0; ; i++ {
			if i == 3 {
				c.Write([]byte("354 go ahead\r\n"))
			}
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	}
}
