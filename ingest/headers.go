package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// StreamHeader selects the stream of a message; ingest removes it before
// queueing.
const StreamHeader = "X-Petrel-Stream"

// DefaultStream is the stream of mail that names none.
const DefaultStream = "transactional"

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
	b.WriteString("Received: ")
	if t.helo != "" || t.ip != "" {
		fmt.Fprintf(&b, "from %s ([%s])\r\n\t", safeToken(t.helo), t.ip)
	}
	fmt.Fprintf(&b, "by %s (Petrel)", safeToken(t.by))
	if t.with != "" {
		fmt.Fprintf(&b, " with %s", t.with)
	}
	fmt.Fprintf(&b, " id %s", t.id)
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

// has8bit reports whether b holds any byte >= 0x80.
func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
