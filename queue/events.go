package queue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
)

// Events returns events in Seq order matching f, at most f.Limit (default
// 100, at most 1000). Page on with After set to the last Seq returned.
func (q *Queue) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	if err := q.enter(); err != nil {
		return nil, err
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
			return nil, err
		}
		from = seq + 1
	}
	if !f.Since.IsZero() && f.Since.UnixNano() > 0 {
		from = max(from, uint64(f.Since.UnixNano()))
	}
	upper := q.visibleSeq()
	if from >= upper {
		return nil, nil
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: eventKey(from), UpperBound: eventKey(upper)})
	if err != nil {
		return nil, fmt.Errorf("queue: iterate events: %w", err)
	}
	defer it.Close()
	var out []Event
	n := 0
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		var ev Event
		if err := decode("event", it.Key(), it.Value(), &ev); err != nil {
			return nil, err
		}
		ev.Seq = string(it.Key()[1:])
		if f.Type != "" && ev.Type != f.Type ||
			f.Recipient != "" && !strings.EqualFold(ev.Recipient, f.Recipient) ||
			f.Campaign != "" && ev.Campaign != f.Campaign ||
			!f.Since.IsZero() && ev.Time.Before(f.Since) {
			continue
		}
		out = append(out, ev)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("queue: iterate events: %w", err)
	}
	return out, nil
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

// SetCursor durably stores cursor name.
func (q *Queue) SetCursor(name, seq string) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	if err := q.db.Set(append([]byte{pCursor}, name...), []byte(seq), pebble.Sync); err != nil {
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
