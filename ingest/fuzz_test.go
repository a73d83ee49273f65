package ingest

import (
	"bytes"
	"log/slog"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/mta"
)

// FuzzDecodeSendRequest feeds arbitrary bytes to the HTTP request decoder
// and, when they decode, to request validation and message building: no
// panic, and every accepted message parses back as RFC 5322 with no header
// a field could have injected.
func FuzzDecodeSendRequest(f *testing.F) {
	for _, s := range []string{
		`{"from":"a@example.org","to":["b@example.com"],"text":"hi"}`,
		`{"from":"A <a@example.org>","to":["b@example.com"],"subject":"ü","text":"x","html":"<p>y</p>","headers":{"X-A":"1"}}`,
		`{"from":"a@example.org","to":["b@example.com"],"raw":"Subject: x\n\nbody"}`,
		`{"from":"a@example.org\r\nBcc: x@y.z","to":["b@example.com"],"text":"hi"}`,
		`{"from":"a@example.org","to":["b@example.com"],"headers":{"X\nBcc":"1"},"text":"hi"}`,
		`{}`, `[]`, `{"to":null}`, `{"from":1}`, `{"from":"a@b.c"} {}`,
	} {
		f.Add([]byte(s))
	}
	h := &httpHandler{opts: HTTPOptions{Hostname: "h.test", MaxMessageSize: 1 << 20, MaxRecipients: 50, Now: time.Now, Logger: slog.New(slog.DiscardHandler)}}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeSendRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		env, msg, err := h.prepare(req, httpapi.Key{Name: "k", Stream: DefaultStream}, time.Now(), "1.fuzz@h.test", func(*Envelope, *SendRequest) error { return nil })
		if err != nil {
			return
		}
		if req.Raw != "" {
			// Raw messages are the client's own bytes: Submit parses them
			// (once) and refuses what does not parse.
			if _, err := mta.ParseMessage(msg); err != nil {
				return
			}
		} else {
			m, err := mail.ReadMessage(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("accepted message does not parse: %v\n%q", err, msg)
			}
			if m.Header.Get("Bcc") != "" {
				t.Fatalf("Bcc header in a built message:\n%q", msg)
			}
			if len(m.Header["From"]) != 1 || len(m.Header["To"]) != 1 {
				t.Fatalf("From/To count wrong:\n%q", msg)
			}
		}
		for _, r := range env.Rcpts {
			if strings.ContainsAny(r, "\r\n") {
				t.Fatalf("recipient with line break %q", r)
			}
		}
	})
}

// FuzzBuildMessage: whatever subject, text, html and header it is given,
// buildMessage either refuses or produces a message that parses back to the
// same content (checkBuilt).
func FuzzBuildMessage(f *testing.F) {
	f.Add("Hello", "text\n", "", "X-A", "v")
	f.Add("Grüße ☕", "", "<p>ü</p>", "X-B", "ü")
	f.Add("", "a\r\n.\r\nb", "<b>x</b>", "List-Id", strings.Repeat("x", 200))
	f.Add("x", strings.Repeat("y", 2000), "\x00", "X", "=?utf-8?q?x?=")
	f.Fuzz(func(t *testing.T, subject, text, html, hname, hvalue string) {
		req := SendRequest{From: "Zoë <a@example.org>", To: []string{"b@example.com"}, Subject: subject, Text: text, HTML: html,
			Headers: map[string]string{hname: hvalue}}
		from, _ := mail.ParseAddress(req.From)
		to, _ := mail.ParseAddress(req.To[0])
		msg, err := buildMessage(composed{From: from, To: []*mail.Address{to}, Subject: subject, Text: text, HTML: html,
			Headers: req.Headers, Date: time.Unix(1700000000, 0), MessageID: "1.2@h.test"})
		if err != nil {
			return
		}
		// Values that are already encoded-word syntax decode to something
		// else; that is the sender's choice, not an injection.
		if strings.Contains(subject, "=?") || strings.Contains(hvalue, "=?") {
			if _, err := mail.ReadMessage(bytes.NewReader(msg)); err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			return
		}
		// Trailing/leading white space of header values is not kept by
		// net/mail; compare trimmed.
		req.Subject = strings.TrimSpace(subject)
		req.Headers = map[string]string{hname: strings.TrimSpace(hvalue)}
		if req.Subject != subject || req.Headers[hname] != hvalue || strings.ContainsAny(subject+hvalue, "\t") {
			if _, err := mail.ReadMessage(bytes.NewReader(msg)); err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			return
		}
		var types []string
		if text != "" {
			types = append(types, "text/plain")
		}
		if html != "" {
			types = append(types, "text/html")
		}
		checkBuilt(t, msg, req, types, nil)
	})
}
