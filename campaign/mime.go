package campaign

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Envelope is the header a rendered message is sent with.
type Envelope struct {
	From    *mail.Address
	To      []*mail.Address
	ReplyTo []*mail.Address
	// MessageIDHost is the host part of the generated Message-ID; ""
	// leaves the Message-ID to ingest.
	MessageIDHost string
	Date          time.Time
	// Extra header fields (List-Unsubscribe, X-Petrel-Campaign, ...), in
	// order. Names are canonicalised by the MIME writer.
	Extra [][2]string
}

// BuildMessage writes r as an RFC 5322 message with CRLF line ends:
// multipart/alternative (text, then HTML with the preheader hidden at the
// top of its body) or a single text/plain part, quoted-printable where
// needed, the subject RFC 2047-encoded when it is not ASCII. It uses
// emersion/go-message for every header and part.
func BuildMessage(env Envelope, r Rendered) ([]byte, error) {
	if env.From == nil || len(env.To) == 0 {
		return nil, fmt.Errorf("campaign: build message: From and To are required")
	}
	var h mail.Header
	h.SetAddressList("From", []*mail.Address{env.From})
	h.SetAddressList("To", env.To)
	if len(env.ReplyTo) > 0 {
		h.SetAddressList("Reply-To", env.ReplyTo)
	}
	h.SetSubject(r.Subject)
	date := env.Date
	if date.IsZero() {
		date = time.Now()
	}
	h.SetDate(date)
	if env.MessageIDHost != "" {
		if err := h.GenerateMessageIDWithHostname(env.MessageIDHost); err != nil {
			return nil, fmt.Errorf("campaign: message id: %w", err)
		}
	}
	for _, kv := range env.Extra {
		h.Add(kv[0], kv[1])
	}
	var buf bytes.Buffer
	// Quoted-printable grows text a little (soft breaks, =XX).
	buf.Grow((len(r.HTML)+len(r.Text))*21/20 + 2048)
	if r.HTML == "" {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		w, err := mail.CreateSingleInlineWriter(&buf, h)
		if err != nil {
			return nil, fmt.Errorf("campaign: build message: %w", err)
		}
		if err := writeAll(w, r.Text); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	// multipart/alternative: go-message writes the header and the
	// boundaries; the bodies are quoted-printable encoded by appendQP
	// straight into the buffer (go-message's part writer would run
	// mime/quotedprintable's byte-at-a-time writer).
	mw := textproto.NewMultipartWriter(&buf)
	h.SetContentType("multipart/alternative", map[string]string{"boundary": mw.Boundary()})
	h.Set("Mime-Version", "1.0")
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, fmt.Errorf("campaign: build message: %w", err)
	}
	for _, p := range []struct{ ctype, body string }{
		{"text/plain", r.Text},
		{"text/html", r.HTML},
	} {
		var ph textproto.Header
		ph.Set("Content-Type", mime.FormatMediaType(p.ctype, map[string]string{"charset": "utf-8"}))
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		if _, err := mw.CreatePart(ph); err != nil {
			return nil, fmt.Errorf("campaign: build message: %w", err)
		}
		b := buf.AvailableBuffer()
		buf.Write(appendQP(b, p.body))
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("campaign: build message: %w", err)
	}
	return buf.Bytes(), nil
}

func writeAll(w io.WriteCloser, s string) error {
	if _, err := io.WriteString(w, s); err != nil {
		w.Close()
		return fmt.Errorf("campaign: build message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("campaign: build message: %w", err)
	}
	return nil
}
