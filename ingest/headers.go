package ingest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// StreamHeader selects the stream of a message; ingest removes it before
// queueing.
const StreamHeader = "X-Petrel-Stream"

// DefaultStream is the stream of mail that names none.
const DefaultStream = "transactional"

// errBadHeader is returned for a message whose header section does not
// parse as RFC 5322.
var errBadHeader = errors.New("malformed message header")

// field is one header field of a message: msg[start:end] holds the whole
// field including continuation lines and the final line break.
type field struct {
	name       string
	start, end int
}

// headerFields scans the header section of msg. It returns the fields and
// the offset of the body (just past the empty line, or len(msg) when the
// message has no body). Bare LF line ends are accepted.
func headerFields(msg []byte) ([]field, int, error) {
	var fields []field
	pos := 0
	for pos < len(msg) {
		eol := bytes.IndexByte(msg[pos:], '\n')
		var line []byte
		next := len(msg)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line = bytes.TrimRight(msg[pos:next], "\r\n")
		if len(line) == 0 {
			return fields, next, nil // the empty line ends the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, 0, errBadHeader
			}
			fields[len(fields)-1].end = next
			pos = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, errBadHeader
		}
		name := line[:colon]
		for _, c := range name {
			if c <= ' ' || c >= 127 {
				return nil, 0, errBadHeader
			}
		}
		fields = append(fields, field{name: string(name), start: pos, end: next})
		pos = next
	}
	return fields, len(msg), nil
}

// fieldValue returns the unfolded, trimmed value of f.
func fieldValue(msg []byte, f field) string {
	v := string(msg[f.start+len(f.name)+1 : f.end])
	v = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
	return strings.TrimSpace(v)
}

// parsedHeader is what ingest needs to know about a message's header.
type parsedHeader struct {
	fields            []field
	bodyAt            int
	hasMsgID, hasDate bool
	// from is the From header's first address, "" when absent/unparsable.
	from string
	// stream is the last X-Petrel-Stream value, "" when absent.
	stream string
}

func parseHeader(msg []byte) (parsedHeader, error) {
	fields, bodyAt, err := headerFields(msg)
	if err != nil {
		return parsedHeader{}, err
	}
	h := parsedHeader{fields: fields, bodyAt: bodyAt}
	for _, f := range fields {
		switch {
		case strings.EqualFold(f.name, "Message-ID"):
			h.hasMsgID = true
		case strings.EqualFold(f.name, "Date"):
			h.hasDate = true
		case strings.EqualFold(f.name, "From") && h.from == "":
			if l, err := mail.ParseAddressList(fieldValue(msg, f)); err == nil && len(l) > 0 {
				h.from = l[0].Address
			}
		case strings.EqualFold(f.name, StreamHeader):
			h.stream = fieldValue(msg, f)
		}
	}
	return h, nil
}

// withoutField returns msg minus every field named name.
func withoutField(msg []byte, fields []field, name string) []byte {
	var out []byte
	last := 0
	for _, f := range fields {
		if !strings.EqualFold(f.name, name) {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(msg))
		}
		out = append(out, msg[last:f.start]...)
		last = f.end
	}
	if out == nil {
		return msg
	}
	return append(out, msg[last:]...)
}

// validStream reports whether s is a usable stream name: 1-64 of a-z, 0-9,
// '-', '_', '.', starting with a letter or digit.
func validStream(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '-' || c == '_' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// newID returns n random bytes as lower-case hex.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// traceInfo is what goes into the Received header.
type traceInfo struct {
	helo, ip, by, with, id, rcpt string
	date                         time.Time
}

// received renders an RFC 5321 4.4 Received header field, folded, with
// CRLF line ends.
func (t traceInfo) received() string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(safeToken(t.helo))
	fmt.Fprintf(&b, " ([%s])\r\n\tby %s (Petrel) with %s id %s", t.ip, safeToken(t.by), t.with, t.id)
	if t.rcpt != "" {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", t.rcpt)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", t.date.Format(time.RFC1123Z))
	return b.String()
}

// safeToken keeps s printable ASCII without spaces, parentheses or
// brackets, so client-chosen names cannot break the trace header.
func safeToken(s string) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 127 || strings.IndexByte("()[];<>\\\"", c) >= 0 {
			b[i] = '?'
		}
	}
	if len(b) > 255 {
		b = b[:255]
	}
	return string(b)
}

// addHeaders returns msg (without any X-Petrel-Stream field) with the
// Received field on top and Message-ID/Date added when h lacks them.
func addHeaders(msg []byte, h parsedHeader, t traceInfo) []byte {
	msg = withoutField(msg, h.fields, StreamHeader)
	top := t.received()
	if !h.hasMsgID {
		top += fmt.Sprintf("Message-ID: <%d.%s@%s>\r\n", t.date.UnixNano(), newID(8), safeToken(t.by))
	}
	if !h.hasDate {
		top += "Date: " + t.date.Format(time.RFC1123Z) + "\r\n"
	}
	out := make([]byte, 0, len(top)+len(msg))
	out = append(out, top...)
	return append(out, msg...)
}

// has8bit reports whether b holds any byte >= 0x80.
func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
