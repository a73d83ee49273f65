package tracking

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// recordV1 marks an engagement record in the binary encoding; records
// written before it are JSON (their first byte is '{') and still read.
const recordV1 = 1

var errBadRecord = errors.New("tracking: bad engagement record")

// appendRecord appends e's binary record to dst: the version, kind,
// machine flag, link (uvarint), time (unix nanoseconds, varint), then
// ten length-prefixed strings. It is several times cheaper than JSON,
// and engagements are written at request rate.
func appendRecord(dst []byte, e *Engagement) []byte {
	flags := byte(0)
	if e.Machine {
		flags = 1
	}
	dst = append(dst, recordV1, byte(e.Kind), flags)
	dst = binary.AppendUvarint(dst, uint64(max(e.Link, 0)))
	dst = binary.AppendVarint(dst, e.Time.UnixNano())
	for _, f := range [...]string{e.Campaign, e.Message, e.Recipient, e.URL, e.IP, e.UserAgent, e.MachineReason, e.Proxy, e.Provider, e.Stream} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// decodeRecord reads a record written by appendRecord, or an older JSON
// one.
func decodeRecord(b []byte) (Engagement, error) {
	var e Engagement
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &e)
		return e, err
	}
	if len(b) < 3 || b[0] != recordV1 || b[2] > 1 {
		return e, errBadRecord
	}
	e.Kind, e.Machine = Kind(b[1]), b[2] == 1
	rest := b[3:]
	link, n := binary.Uvarint(rest)
	if n <= 0 || link > 1<<20 {
		return e, errBadRecord
	}
	e.Link, rest = int(link), rest[n:]
	ns, n := binary.Varint(rest)
	if n <= 0 {
		return e, errBadRecord
	}
	e.Time, rest = time.Unix(0, ns).UTC(), rest[n:]
	// One string for the record's fields, which are its substrings (the
	// forwarder reads every engagement: one allocation each, not ten).
	all := string(rest)
	off := 0
	for _, f := range [...]*string{&e.Campaign, &e.Message, &e.Recipient, &e.URL, &e.IP, &e.UserAgent, &e.MachineReason, &e.Proxy, &e.Provider, &e.Stream} {
		l, n := binary.Uvarint(rest[off:])
		if n <= 0 || l > uint64(len(rest)-off-n) {
			return Engagement{}, errBadRecord
		}
		*f = all[off+n : off+n+int(l)]
		off += n + int(l)
	}
	if off != len(rest) {
		return Engagement{}, errBadRecord
	}
	return e, nil
}
