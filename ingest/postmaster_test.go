package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"testing"

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
