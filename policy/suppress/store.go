// Package suppress owns Petrel's suppression list: addresses that must not
// receive mail, per stream or globally ("*"), with the reason, the source
// that added them and when. It keeps its own Pebble store (point lookups
// through bloom filters) so a list of tens of millions of entries costs
// ingest and delivery one or two cheap Gets per recipient.
//
// Addresses: the domain is lower-cased and the local part is stored as
// given, but lookups are case-insensitive over the whole address (the key
// is the fully lower-cased address), because senders and ESP lists treat
// John@x and john@x as one person even though RFC 5321 allows otherwise.
//
// Keyspace (one Pebble DB at <data_dir>/suppression):
//
//	key   "u" stream 0x00 lower(address)
//	value reason(1) unix-nanos(8, big-endian) len(source)(1) source address
//	key   "o" seq(8, big-endian): the outbox of changes whose events are not
//	      yet acknowledged (outbox.go; ARCHITECTURE.md invariant 9)
package suppress

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Reason says why an address is suppressed.
type Reason string

// Suppression reasons.
const (
	ReasonHardBounce  Reason = "hard_bounce"
	ReasonComplaint   Reason = "complaint"
	ReasonUnsubscribe Reason = "unsubscribe"
	ReasonManual      Reason = "manual"
)

var reasonCodes = [...]Reason{ReasonManual, ReasonHardBounce, ReasonComplaint, ReasonUnsubscribe}

func reasonCode(r Reason) (byte, bool) {
	for i, v := range reasonCodes {
		if v == r {
			return byte(i), true
		}
	}
	return 0, false
}

// ParseReason validates a reason string; "" means manual.
func ParseReason(s string) (Reason, error) {
	if s == "" {
		return ReasonManual, nil
	}
	if _, ok := reasonCode(Reason(s)); !ok {
		return "", fmt.Errorf("suppress: reason %q is not one of hard_bounce, complaint, unsubscribe, manual", s)
	}
	return Reason(s), nil
}

// AllStreams is the stream name of a global suppression.
const AllStreams = "*"

// Entry is one suppressed address.
type Entry struct {
	// Address with its domain lower-cased.
	Address string    `json:"address"`
	Stream  string    `json:"stream"`
	Reason  Reason    `json:"reason"`
	Source  string    `json:"source"`
	Time    time.Time `json:"time"`
}

// ErrNotFound is returned by Get and Remove for an address that is not
// suppressed in that stream.
var ErrNotFound = errors.New("suppress: not found")

// Store is the suppression list. It is safe for concurrent use.
type Store struct {
	db    *pebble.DB
	log   *slog.Logger
	ready chan struct{} // OutboxReady

	seqMu   sync.Mutex
	lastSeq uint64 // last outbox seq handed out
	// OnChange, if set before use, is called after every committed Add,
	// Remove and imported entry. It must not block for long.
	OnChange func(e Entry, removed bool)
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &pebble.Options{
		MemTableSize:                16 << 20,
		MemTableStopWritesThreshold: 4,
		MaxConcurrentCompactions:    func() int { return 1 },
		Logger:                      pebbleLogger{log},
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].BlockSize = 4 << 10 // point lookups: small blocks decode fast
		o.Levels[i].TargetFileSize = 32 << 20
	}
	o.Cache = pebble.NewCache(128 << 20)
	defer o.Cache.Unref()
	db, err := pebble.Open(dir, o.EnsureDefaults())
	if err != nil {
		return nil, fmt.Errorf("suppress: open %s: %w", dir, err)
	}
	s := &Store{db: db, log: log, ready: make(chan struct{}, 1)}
	if err := s.loadLastSeq(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("suppress: close: %w", err)
	}
	return nil
}

// NormalizeAddress validates addr and returns it with the domain
// lower-cased (and surrounding <>/spaces removed).
func NormalizeAddress(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", fmt.Errorf("suppress: %q is not an address (local@domain)", addr)
	}
	if len(a) > 320 || !utf8.ValidString(a) {
		return "", fmt.Errorf("suppress: %q is not a valid address", addr)
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || r == ',' {
			return "", fmt.Errorf("suppress: %q contains a space, comma or control character", addr)
		}
	}
	return a[:at+1] + strings.ToLower(a[at+1:]), nil
}

func validStream(stream string) error {
	if stream == "" || len(stream) > 64 || strings.ContainsAny(stream, "\x00/ ,") {
		return fmt.Errorf("suppress: invalid stream %q", stream)
	}
	return nil
}

func key(stream, lowerAddr string) []byte {
	k := make([]byte, 0, 2+len(stream)+len(lowerAddr))
	k = append(k, 'u')
	k = append(k, stream...)
	k = append(k, 0)
	return append(k, lowerAddr...)
}

func encodeValue(e Entry) []byte {
	code, _ := reasonCode(e.Reason)
	src := e.Source
	if len(src) > 255 {
		src = src[:255]
	}
	v := make([]byte, 0, 10+len(src)+len(e.Address))
	v = append(v, code)
	v = binary.BigEndian.AppendUint64(v, uint64(e.Time.UnixNano()))
	v = append(v, byte(len(src)))
	v = append(v, src...)
	return append(v, e.Address...)
}

func decodeValue(stream string, v []byte) (Entry, error) {
	if len(v) < 10 || int(v[0]) >= len(reasonCodes) || len(v) < 10+int(v[9]) {
		return Entry{}, errors.New("suppress: corrupt entry")
	}
	n := int(v[9])
	return Entry{
		Stream:  stream,
		Reason:  reasonCodes[v[0]],
		Time:    time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC(),
		Source:  string(v[10 : 10+n]),
		Address: string(v[10+n:]),
	}, nil
}

// prepare normalises and validates e, filling defaults.
func prepare(e *Entry) error {
	a, err := NormalizeAddress(e.Address)
	if err != nil {
		return err
	}
	e.Address = a
	if e.Stream == "" {
		e.Stream = AllStreams
	}
	if err := validStream(e.Stream); err != nil {
		return err
	}
	if e.Reason, err = ParseReason(string(e.Reason)); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	return nil
}

// Add suppresses e.Address in e.Stream ("" means "*"), replacing any
// earlier entry. Reason "" means manual; a zero Time means now.
func (s *Store) Add(e Entry) (Entry, error) {
	if err := prepare(&e); err != nil {
		return Entry{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key(e.Stream, strings.ToLower(e.Address)), encodeValue(e), nil); err != nil {
		return Entry{}, fmt.Errorf("suppress: add: %w", err)
	}
	if err := s.setWithOutbox(b, e, false); err != nil {
		return Entry{}, fmt.Errorf("suppress: add: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Entry{}, fmt.Errorf("suppress: add: %w", err)
	}
	s.signalOutbox()
	if s.OnChange != nil {
		s.OnChange(e, false)
	}
	return e, nil
}

// Remove lifts the suppression of addr in stream.
func (s *Store) Remove(stream, addr string) (Entry, error) {
	e, err := s.Get(stream, addr)
	if err != nil {
		return Entry{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(key(e.Stream, strings.ToLower(e.Address)), nil); err != nil {
		return Entry{}, fmt.Errorf("suppress: remove: %w", err)
	}
	if err := s.setWithOutbox(b, e, true); err != nil {
		return Entry{}, fmt.Errorf("suppress: remove: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Entry{}, fmt.Errorf("suppress: remove: %w", err)
	}
	s.signalOutbox()
	if s.OnChange != nil {
		s.OnChange(e, true)
	}
	return e, nil
}

// Get returns the entry of addr in exactly stream (no "*" fallback).
func (s *Store) Get(stream, addr string) (Entry, error) {
	a, err := NormalizeAddress(addr)
	if err != nil {
		return Entry{}, err
	}
	if stream == "" {
		stream = AllStreams
	}
	v, closer, err := s.db.Get(key(stream, strings.ToLower(a)))
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("suppress: get: %w", err)
	}
	defer closer.Close()
	return decodeValue(stream, v)
}

// Compact compacts the whole keyspace into the bottom level, so lookups
// after a bulk import consult one sorted run instead of many overlapping
// L0 files. Import calls it after large imports.
func (s *Store) Compact() error {
	if err := s.db.Compact([]byte("u"), []byte("v"), true); err != nil {
		return fmt.Errorf("suppress: compact: %w", err)
	}
	return nil
}

// Suppressed reports whether addr is suppressed in stream or globally,
// and why. It is the hot-path check: one or two bloom-filtered Gets, no
// validation beyond lower-casing. Errors count as not suppressed and are
// logged.
func (s *Store) Suppressed(stream, addr string) (Reason, bool) {
	var buf [128]byte
	lower := appendLower(buf[:0], addr)
	streams := [2]string{stream, AllStreams}
	for i, st := range streams {
		if st == "" || (i == 1 && stream == AllStreams) {
			continue
		}
		k := make([]byte, 0, 2+len(st)+len(lower))
		k = append(append(append(append(k, 'u'), st...), 0), lower...)
		v, closer, err := s.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			s.log.Warn("suppression lookup failed", "err", err, "stream", st)
			continue
		}
		r := ReasonManual
		if len(v) > 0 && int(v[0]) < len(reasonCodes) {
			r = reasonCodes[v[0]]
		}
		closer.Close()
		return r, true
	}
	return "", false
}

func appendLower(dst []byte, s string) []byte {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(dst, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Page is one page of List.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next is the cursor for the following page; "" at the end.
	Next string `json:"next,omitempty"`
}

// List returns up to limit entries of stream ("" = every stream) in key
// order, starting after the cursor after (a Page.Next value).
func (s *Store) List(stream, after string, limit int) (Page, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	lower := []byte{'u'}
	upper := []byte{'v'}
	if stream != "" {
		if err := validStream(stream); err != nil {
			return Page{}, err
		}
		lower = key(stream, "")
		upper = append(append([]byte{'u'}, stream...), 1) // just past "u" stream 0x00 ...
	}
	start := lower
	if after != "" {
		c, err := decodeCursor(after)
		if err != nil {
			return Page{}, err
		}
		if bytes.Compare(c, lower) >= 0 {
			start = append(c, 0) // strictly after
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: upper})
	if err != nil {
		return Page{}, fmt.Errorf("suppress: list: %w", err)
	}
	defer it.Close()
	var p Page
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		sep := bytes.IndexByte(k, 0)
		if sep < 1 {
			continue
		}
		e, err := decodeValue(string(k[1:sep]), it.Value())
		if err != nil {
			return Page{}, err
		}
		p.Entries = append(p.Entries, e)
		if len(p.Entries) == limit {
			last := bytes.Clone(k)
			if it.Next() {
				p.Next = encodeCursor(last)
			}
			break
		}
	}
	if err := it.Error(); err != nil {
		return Page{}, fmt.Errorf("suppress: list: %w", err)
	}
	return p, nil
}

func encodeCursor(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }

func decodeCursor(c string) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(k) == 0 || k[0] != 'u' {
		return nil, fmt.Errorf("suppress: invalid cursor %q", c)
	}
	return k, nil
}

// pebbleLogger routes Pebble's log lines into slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "suppression")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "suppression")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "suppression")
	panic(fmt.Sprintf(format, args...))
}
