package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key prefixes; see the package comment for the table.
const (
	pMeta    = 'm'
	pBody    = 'b'
	pRcpt    = 'r'
	pLive    = 'l'
	pSched   = 's'
	pEvent   = 'e'
	pTomb    = 't'
	pCursor  = 'k'
	pCounter = 'c'
	pIdem    = 'i'
)

// idemKey is the i key of an idempotency key: its value is the message ID
// the key was first enqueued as.
func idemKey(k string) []byte { return append([]byte{pIdem}, k...) }

// idLen is the length of a message ID: 16 bytes (8 of unix nanos, 8 random)
// in lower-case base32hex, which sorts like the bytes it encodes.
const idLen = 26

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newID returns a time-ordered, unique, URL-safe message ID.
func newID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	_, _ = rand.Read(b[8:]) // crypto/rand.Read never fails (Go 1.24+).
	return idEncoding.EncodeToString(b[:])
}

// idFloor is the smallest ID that newID could return at time t: used to
// turn a retention horizon into a key bound.
func idFloor(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether s has the shape of a message ID.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

// idTime decodes the creation time embedded in a message ID.
func idTime(id string) (time.Time, bool) {
	if !validID(id) {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 16 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), true
}

func msgKey(p byte, id string) []byte {
	k := make([]byte, 0, 1+len(id))
	return append(append(k, p), id...)
}

func rcptKey(id string, idx int) []byte {
	k := make([]byte, 0, 1+idLen+4)
	k = append(append(k, pRcpt), id...)
	return binary.BigEndian.AppendUint32(k, uint32(idx))
}

// rcptPrefix bounds every r key of one message: [lo, hi).
func rcptPrefix(id string) (lo, hi []byte) {
	lo = msgKey(pRcpt, id)
	hi = append(msgKey(pRcpt, id), 0xff, 0xff, 0xff, 0xff, 0xff)
	return lo, hi
}

func parseRcptKey(k []byte) (id string, idx int, err error) {
	if len(k) != 1+idLen+4 || k[0] != pRcpt {
		return "", 0, fmt.Errorf("queue: malformed recipient key %q", k)
	}
	return string(k[1 : 1+idLen]), int(binary.BigEndian.Uint32(k[1+idLen:])), nil
}

// schedKey is s | due (8 bytes big-endian unix nanos, offset so negative
// times still sort) | domain | 0x00 | msgID | rcpt# (4 bytes). It is
// parsed from both ends, so the domain may hold any byte.
func schedKey(due int64, domain, id string, idx int) []byte {
	k := make([]byte, 0, 1+8+len(domain)+1+idLen+4)
	k = append(k, pSched)
	k = binary.BigEndian.AppendUint64(k, uint64(due)^(1<<63))
	k = append(k, domain...)
	k = append(k, 0)
	k = append(k, id...)
	return binary.BigEndian.AppendUint32(k, uint32(idx))
}

// schedBound is the smallest s key with the given due time.
func schedBound(due int64) []byte {
	k := make([]byte, 0, 9)
	k = append(k, pSched)
	return binary.BigEndian.AppendUint64(k, uint64(due)^(1<<63))
}

type schedEntry struct {
	due    int64
	domain string
	id     string
	idx    int
}

func parseSchedKey(k []byte) (schedEntry, error) {
	if len(k) < 1+8+1+idLen+4 || k[0] != pSched || k[len(k)-idLen-5] != 0 {
		return schedEntry{}, fmt.Errorf("queue: malformed schedule key %q", k)
	}
	n := len(k)
	return schedEntry{
		due:    int64(binary.BigEndian.Uint64(k[1:9]) ^ (1 << 63)),
		domain: string(k[9 : n-idLen-5]),
		id:     string(k[n-idLen-4 : n-4]),
		idx:    int(binary.BigEndian.Uint32(k[n-4:])),
	}, nil
}

// Event sequence numbers are 16 hex digits of a monotonic counter seeded
// from the clock in nanoseconds, so they sort by time and never repeat.
func seqString(n uint64) string {
	s := strconv.FormatUint(n, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

func parseSeq(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: event seq %q", ErrBadCursor, s)
	}
	n, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: event seq %q: %v", ErrBadCursor, s, err)
	}
	return n, nil
}

func eventKey(seq uint64) []byte {
	return append([]byte{pEvent}, seqString(seq)...)
}

// domainOf returns the lower-cased domain of addr ("" without an @).
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
