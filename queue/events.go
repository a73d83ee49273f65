package queue

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
)

// Events returns events in Seq order matching f, at most f.Limit (default
// 100, at most 1000). Page on with After set to the last Seq returned.
func (q *Queue) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	evs, _, err := q.EventsScan(ctx, f)
	return evs, err
}

// maxScan bounds the events one EventsScan call examines.
const maxScan = 100_000

// EventsScan is Events that also returns the Seq of the last event it
// examined, matching or not ("" when it examined none), at most maxScan
// of them: a reader that filters (by Type or Types) moves its cursor
// there, so it never examines the events it skipped again. Events whose
// type does not match are skipped without being decoded.
func (q *Queue) EventsScan(ctx context.Context, f EventFilter) ([]Event, string, error) {
	if err := q.enter(); err != nil {
		return nil, "", err
	}
	defer q.exit()
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var from uint64
	if f.After != "" {
		seq, err := parseSeq(f.After)
		if err != nil {
			return nil, "", err
		}
		from = seq + 1
	}
	if !f.Since.IsZero() && f.Since.UnixNano() > 0 {
		from = max(from, uint64(f.Since.UnixNano()))
	}
	upper := q.visibleSeq()
	if from >= upper {
		return nil, "", nil
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: eventKey(from), UpperBound: eventKey(upper)})
	if err != nil {
		return nil, "", fmt.Errorf("queue: iterate events: %w", err)
	}
	defer it.Close()
	var out []Event
	var last []byte
	n := 0
	for it.First(); it.Valid() && len(out) < limit && n < maxScan; it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		last = append(last[:0], it.Key()...)
		if typ, ok := peekEventType(it.Value()); ok && !f.wantType(typ) {
			continue
		}
		var ev Event
		if err := decode("event", it.Key(), it.Value(), &ev); err != nil {
			return nil, "", err
		}
		ev.Seq = string(it.Key()[1:])
		if !f.wantType(ev.Type) ||
			f.Recipient != "" && !strings.EqualFold(ev.Recipient, f.Recipient) ||
			f.Campaign != "" && ev.Campaign != f.Campaign ||
			!f.Since.IsZero() && ev.Time.Before(f.Since) {
			continue
		}
		out = append(out, ev)
	}
	if err := it.Error(); err != nil {
		return nil, "", fmt.Errorf("queue: iterate events: %w", err)
	}
	var scanned string
	if last != nil {
		scanned = string(last[1:])
	}
	return out, scanned, nil
}

// wantType reports whether f selects events of type typ.
func (f *EventFilter) wantType(typ string) bool {
	if f.Type != "" && typ != f.Type {
		return false
	}
	return len(f.Types) == 0 || slices.Contains(f.Types, typ)
}

// peekEventType reads the type of an e value as the queue writes it
// ({"seq":"<16 hex>","type":"<type>",...}) without decoding the rest;
// ok is false for any other layout or a type that is not plain
// printable ASCII (the caller decodes it then).
func peekEventType(v []byte) (typ string, ok bool) {
	const head, mid = `{"seq":"`, `","type":"`
	const off = len(head) + 16 + len(mid)
	if len(v) < off || string(v[:len(head)]) != head || string(v[len(head)+16:off]) != mid {
		return "", false
	}
	rest := v[off:]
	for i, c := range rest {
		switch {
		case c == '"':
			if laterTypeKey(rest[i+1:]) {
				return "", false // encoding/json would take a later "Type" key
			}
			return string(rest[:i]), true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false // escaped or not ASCII: decode it
		}
	}
	return "", false
}

// laterTypeKey reports whether rest may hold another key that
// encoding/json matches to Type (case-insensitively, the last one
// winning): an escape anywhere, or "type" in any case before a quote.
func laterTypeKey(rest []byte) bool {
	if bytes.IndexByte(rest, '\\') >= 0 {
		return true
	}
	for i := 0; ; i++ {
		j := bytes.IndexByte(rest[i:], '"')
		if j < 0 {
			return false
		}
		i += j
		if i >= 4 && rest[i-4]|0x20 == 't' && rest[i-3]|0x20 == 'y' && rest[i-2]|0x20 == 'p' && rest[i-1]|0x20 == 'e' {
			return true
		}
	}
}

// AppendEvents durably records events that are not a queue state change
// (complained, unsubscribed, ...). Seq is assigned; a zero Time is now.
func (q *Queue) AppendEvents(ctx context.Context, evs []Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(evs) == 0 {
		return nil
	}
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	t := q.newTxn()
	for _, ev := range evs {
		if ev.Type == "" {
			t.abort()
			return fmt.Errorf("queue: append event: empty type")
		}
		if ev.Time.IsZero() {
			ev.Time = t.now
		}
		t.events = append(t.events, ev)
	}
	return t.commit(true)
}

// Cursor returns the durable cursor name ("" if never set).
func (q *Queue) Cursor(name string) (string, error) {
	if err := q.enter(); err != nil {
		return "", err
	}
	defer q.exit()
	v, _, err := get(q.db, append([]byte{pCursor}, name...))
	return string(v), err
}

// CursorSyncInterval is how often SetCursor syncs a cursor's write.
const CursorSyncInterval = time.Second

// SetCursor stores cursor name. The write is synced at most once per
// CursorSyncInterval per cursor; the writes in between become durable
// with the next synced commit of the spool (every enqueue and delivery
// result is one: Pebble's log is sequential) or the cursor's next synced
// write. So a crash rolls a cursor back at most to its value at the last
// synced commit, or CursorSyncInterval before its last move: its reader
// (at least once) reads the events after that again.
func (q *Queue) SetCursor(name, seq string) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	now := time.Now()
	q.curMu.Lock()
	sync := now.Sub(q.cursorSynced[name]) >= CursorSyncInterval || now.Before(q.cursorSynced[name])
	if sync {
		q.cursorSynced[name] = now
	}
	q.curMu.Unlock()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := q.db.Set(append([]byte{pCursor}, name...), []byte(seq), wo); err != nil {
		return fmt.Errorf("queue: set cursor %q: %w", name, err)
	}
	return nil
}

// retentionDue reports whether a retention pass is due by the queue's
// clock (checked on every scheduler tick).
func (q *Queue) retentionDue(last *time.Time) bool {
	now := q.now()
	every := min(q.opts.EventRetention/10, 10*time.Minute)
	if !last.IsZero() && now.Sub(*last) < every && now.After(*last) {
		return false
	}
	*last = now
	return true
}

// expireOld range-deletes events and tombstones older than the retention.
func (q *Queue) expireOld() error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	horizon := q.now().Add(-q.opts.EventRetention)
	if horizon.UnixNano() <= 0 {
		return nil
	}
	b := q.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(eventKey(0), eventKey(uint64(horizon.UnixNano())), nil); err != nil {
		return fmt.Errorf("queue: batch: %w", err)
	}
	if err := b.DeleteRange([]byte{pTomb}, msgKey(pTomb, idFloor(horizon)), nil); err != nil {
		return fmt.Errorf("queue: batch: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("queue: retention: %w", err)
	}
	return nil
}
