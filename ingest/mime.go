package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// composed is the input for building a message from parts (the HTTP API's
// "subject/text/html/headers" form).
type composed struct {
	From    *mail.Address
	To      []*mail.Address
	Subject string
	Text    string
	HTML    string
	Headers map[string]string
	Date    time.Time
	// MessageID without angle brackets.
	MessageID string
}

// Errors of buildMessage; all are the client's fault.
var (
	errNoBody         = errors.New("text or html is required")
	errHeaderName     = errors.New("invalid header name")
	errHeaderValue    = errors.New("header value contains CR, LF or NUL, or is too long")
	errReservedHeader = errors.New("header is set by Petrel and cannot be given in headers")
	errNotUTF8        = errors.New("text is not valid UTF-8")
)

// reservedHeaders are built by buildMessage and may not be overridden.
var reservedHeaders = []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version",
	"Content-Type", "Content-Transfer-Encoding", "Received", "Return-Path"}

// maxHeaderValue bounds one header value (before encoding).
const maxHeaderValue = 900

// hasCtl reports CR, LF or NUL: what would let a value start a new header
// line or break the message.
func hasCtl(s string) bool { return strings.ContainsAny(s, "\r\n\x00") }

// checkHeaderName reports whether name is an RFC 5322 field name
// (printable ASCII except colon) that the client may set.
func checkHeaderName(name string) error {
	if name == "" || len(name) > 76 {
		return fmt.Errorf("%w: %q", errHeaderName, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 127 || c == ':' {
			return fmt.Errorf("%w: %q", errHeaderName, name)
		}
	}
	if slices.Contains(reservedHeaders, textproto.CanonicalMIMEHeaderKey(name)) {
		return fmt.Errorf("%w: %s", errReservedHeader, name)
	}
	return nil
}

// encodeWord returns s as is when it is printable ASCII, else as RFC 2047
// encoded-words.
func encodeWord(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || s[i] < ' ' && s[i] != '\t' {
			return mime.QEncoding.Encode("utf-8", s)
		}
	}
	return s
}

// buildMessage renders c as an RFC 5322 / MIME message with CRLF line ends:
// text/plain or text/html alone, or multipart/alternative with both, each
// part 7bit when it is short-lined ASCII, quoted-printable otherwise.
func buildMessage(c composed) ([]byte, error) {
	if c.Text == "" && c.HTML == "" {
		return nil, errNoBody
	}
	if !utf8.ValidString(c.Text) || !utf8.ValidString(c.HTML) || !utf8.ValidString(c.Subject) {
		return nil, errNotUTF8
	}
	if hasCtl(c.Subject) || len(c.Subject) > maxHeaderValue {
		return nil, fmt.Errorf("subject: %w", errHeaderValue)
	}
	var b bytes.Buffer
	w := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	w("From", c.From.String())
	to := make([]string, len(c.To))
	for i, a := range c.To {
		to[i] = a.String()
	}
	w("To", strings.Join(to, ",\r\n "))
	if c.Subject != "" {
		w("Subject", encodeWord(c.Subject))
	}
	w("Date", c.Date.Format(time.RFC1123Z))
	w("Message-ID", "<"+c.MessageID+">")
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := c.Headers[n]
		if err := checkHeaderName(n); err != nil {
			return nil, err
		}
		if hasCtl(v) || len(v) > maxHeaderValue || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s: %w", n, errHeaderValue)
		}
		w(n, encodeWord(v))
	}
	w("MIME-Version", "1.0")
	if c.Text == "" || c.HTML == "" {
		ctype, body := "text/plain", c.Text
		if c.Text == "" {
			ctype, body = "text/html", c.HTML
		}
		h, enc := partHeader(ctype, body)
		for _, k := range []string{"Content-Type", "Content-Transfer-Encoding"} {
			w(k, h.Get(k))
		}
		b.WriteString("\r\n")
		b.Write(enc)
		return b.Bytes(), nil
	}
	mw := multipart.NewWriter(&b)
	w("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	for _, p := range []struct{ ctype, body string }{{"text/plain", c.Text}, {"text/html", c.HTML}} {
		h, enc := partHeader(p.ctype, p.body)
		pw, err := mw.CreatePart(h)
		if err != nil {
			return nil, fmt.Errorf("mime part: %w", err)
		}
		pw.Write(enc)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("mime close: %w", err)
	}
	return b.Bytes(), nil
}

// lineBreaks makes every line break (CRLF, bare CR, bare LF) a LF.
var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// partHeader picks the transfer encoding for body and returns the part
// header and the encoded body (ending in CRLF). Line breaks of any style
// become CRLF.
func partHeader(ctype, body string) (textproto.MIMEHeader, []byte) {
	body = lineBreaks.Replace(body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", mime.FormatMediaType(ctype, map[string]string{"charset": "utf-8"}))
	if is7bit(body) {
		h.Set("Content-Transfer-Encoding", "7bit")
		s := strings.ReplaceAll(body, "\n", "\r\n")
		if !strings.HasSuffix(s, "\r\n") {
			s += "\r\n"
		}
		return h, []byte(s)
	}
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	var out bytes.Buffer
	qw := quotedprintable.NewWriter(&out)
	qw.Write([]byte(body))
	qw.Close()
	if !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
		out.WriteString("\r\n")
	}
	return h, out.Bytes()
}

// is7bit reports whether s can go as 7bit: ASCII without NUL or bare CR,
// lines at most 998 octets.
func is7bit(s string) bool {
	line := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			line = 0
			continue
		case c == '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return false
			}
			continue
		case c == 0 || c >= 0x80:
			return false
		}
		line++
		if line > 998 {
			return false
		}
	}
	return true
}
