package delivery

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"

	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// TestEightBitNextHop delivers 8-bit messages to a real MX that offers
// 8BITMIME and to a strict one that does not (it refuses BODY=8BITMIME
// and any 8-bit octet): the first gets the stored bytes with
// BODY=8BITMIME, the second valid 7-bit MIME that decodes to the same text.
func TestEightBitNextHop(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("eight.test. 300 IN MX 10 mx.eight.test.", "mx.eight.test. 300 IN A 127.0.0.2",
		"seven.test. 300 IN MX 10 mx.seven.test.", "mx.seven.test. 300 IN A 127.0.0.3")
	eight := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
	seven := f.startMX(t, "127.0.0.3", testnet.MXOptions{No8BitMIME: true})
	d := f.deliverer(t, nil)

	const text = "Grüße aus Köln – 10 €\r\n.a line with a leading dot\r\n"
	tests := []struct {
		name string
		body string
		// text is the decoded content of the (first) text part.
		text string
		// conv: the message cannot be converted (bounce at a 7-bit hop).
		noConv bool
	}{
		{"no MIME headers (swaks --data)", "From: a@src.test\r\nSubject: hi\r\n\r\n" + text, text, false},
		{"text/plain 8bit (smtplib)", "From: a@src.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text, text, false},
		{"multipart", "From: a@src.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text + "--zz\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>€</p>\r\n--zz--\r\n",
			strings.TrimSuffix(text, "\r\n"), false}, // the CRLF before a boundary belongs to it
		{"7-bit", testBody, "", false},
		{"8-bit octets in base64", "From: a@src.test\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBE\xff\r\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is8 := eightbit.BodyHas8bit([]byte(tt.body))
			// To the 8BITMIME host: as stored.
			n := eight.Count()
			res := d.Deliver(context.Background(), batch("eight.test", "r@eight.test"), []byte(tt.body))
			if res[0].Outcome != queue.Delivered {
				t.Fatalf("to 8BITMIME host: %+v", res[0])
			}
			m := eight.Mails()[n]
			if !bytes.Equal(m.Data, []byte(tt.body)) {
				t.Errorf("8BITMIME host got other bytes:\n%q\nwant\n%q", m.Data, tt.body)
			}
			if want := map[bool]string{true: "8BITMIME", false: ""}[is8]; m.Body != want {
				t.Errorf("BODY=%q, want %q", m.Body, want)
			}

			// To the 7-bit host: converted (or refused when impossible).
			n = seven.Count()
			res = d.Deliver(context.Background(), batch("seven.test", "r@seven.test"), []byte(tt.body))
			if tt.noConv {
				if res[0].Outcome != queue.Bounced || res[0].Enhanced != "5.6.3" || !strings.Contains(res[0].Reply, "8BITMIME") {
					t.Fatalf("unconvertible message to a 7-bit host: %+v, want bounced 5.6.3", res[0])
				}
				return
			}
			if res[0].Outcome != queue.Delivered {
				t.Fatalf("to 7-bit host: %+v", res[0])
			}
			m = seven.Mails()[n]
			if m.Body != "" {
				t.Errorf("BODY=%s sent to a host without 8BITMIME", m.Body)
			}
			if eightbit.Has8bit(m.Data) {
				t.Errorf("8-bit octets reached the 7-bit host:\n%s", m.Data)
			}
			if !is8 {
				if !bytes.Equal(m.Data, []byte(tt.body)) {
					t.Errorf("7-bit message changed")
				}
				return
			}
			if !bytes.Contains(m.Data, []byte("Content-Transfer-Encoding: quoted-printable\r\n")) {
				t.Errorf("no quoted-printable part:\n%s", m.Data)
			}
			if got := firstText(t, m.Data); got != tt.text {
				t.Errorf("decoded text %q, want %q", got, tt.text)
			}
		})
	}
}

// firstText decodes msg with go-message and returns its first text/plain
// part's content.
func firstText(t *testing.T, msg []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("read converted message: %v\n%s", err, msg)
	}
	var out string
	found := false
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		mt, _, _ := p.Header.ContentType()
		if mt != "text/plain" || found {
			return nil
		}
		b, err := io.ReadAll(p.Body)
		out, found = string(b), true
		return err
	})
	if err != nil || !found {
		t.Fatalf("no text/plain part (%v):\n%s", err, msg)
	}
	return out
}
