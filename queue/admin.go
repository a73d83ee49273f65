package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// Message returns a message and its recipients. After the message is done
// (every recipient final) its tombstone answers for EventRetention.
func (q *Queue) Message(msgID string) (*MessageInfo, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.exit()
	if !validID(msgID) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, msgID)
	}
	mt, ok, err := q.loadMsg(msgID)
	if err != nil {
		return nil, err
	}
	if ok {
		defer mt.abort()
		info := &MessageInfo{ID: msgID, From: mt.meta.From, Stream: mt.meta.Stream, Campaign: mt.meta.Campaign,
			Source: mt.meta.Source, Size: mt.meta.Size, Created: time.Unix(0, mt.meta.Created).UTC()}
		err := mt.eachRcpt(func(idx int, r *rcptRec) error {
			info.Recipients = append(info.Recipients, r.info(msgID, idx))
			return nil
		})
		if err != nil {
			return nil, err
		}
		return info, nil
	}
	info := new(MessageInfo)
	ok, err = getJSON(q.db, "tombstone", msgKey(pTomb, msgID), info)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, msgID)
	}
	return info, nil
}

// List returns live recipients in message-ID order, at most limit
// (default 100, at most 1000), starting after cursor after; the returned
// cursor is "" at the end.
func (q *Queue) List(ctx context.Context, after string, limit int) ([]RcptInfo, string, error) {
	if err := q.enter(); err != nil {
		return nil, "", err
	}
	defer q.exit()
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	lower := []byte{pRcpt}
	if after != "" {
		id, idxs, ok := strings.Cut(after, ".")
		idx, err := strconv.ParseUint(idxs, 10, 32)
		if !ok || err != nil || !validID(id) {
			return nil, "", fmt.Errorf("%w: list cursor %q", ErrBadCursor, after)
		}
		lower = append(rcptKey(id, int(idx)), 0)
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pRcpt + 1}})
	if err != nil {
		return nil, "", fmt.Errorf("queue: iterate recipients: %w", err)
	}
	defer it.Close()
	var out []RcptInfo
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		if len(out) == limit {
			last := out[len(out)-1]
			return out, last.MsgID + "." + strconv.Itoa(last.Index), nil
		}
		id, idx, err := parseRcptKey(it.Key())
		if err != nil {
			return nil, "", err
		}
		var r rcptRec
		if err := decode("recipient", it.Key(), it.Value(), &r); err != nil {
			return nil, "", err
		}
		if !r.State.Final() {
			out = append(out, r.info(id, idx))
		}
	}
	if err := it.Error(); err != nil {
		return nil, "", fmt.Errorf("queue: iterate recipients: %w", err)
	}
	return out, "", nil
}

// change applies fn to every recipient of one message under its stripe
// lock and commits; it returns how many recipients fn changed.
func (q *Queue) change(id string, sync bool, fn func(mt *msgTxn, idx int, r *rcptRec) (bool, error)) (int, error) {
	mu := q.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	mt, ok, err := q.loadMsg(id)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	n, err := mt.changeAll(fn)
	if err != nil || n == 0 {
		mt.abort()
		return 0, err
	}
	return n, mt.finish(sync)
}

// changeAll applies fn to every recipient of mt; n counts the changed.
func (mt *msgTxn) changeAll(fn func(mt *msgTxn, idx int, r *rcptRec) (bool, error)) (n int, err error) {
	err = mt.eachRcpt(func(idx int, r *rcptRec) error {
		changed, err := fn(mt, idx, r)
		if changed {
			n++
		}
		return err
	})
	return n, err
}

// bulkChunk is how many messages a bulk change commits per synced batch.
const bulkChunk = 1000

// multi is one synced batch of changes to many messages: it holds the
// stripe of every message it touched until commit.
type multi struct {
	q    *Queue
	t    *txn
	held map[*sync.Mutex]bool
}

// newMulti starts a multi-message batch; the caller holds q.bulkMu.
func (q *Queue) newMulti() *multi {
	return &multi{q: q, t: q.newTxn(), held: make(map[*sync.Mutex]bool)}
}

// change applies fn to the recipients of message id inside the batch.
func (m *multi) change(id string, fn func(mt *msgTxn, idx int, r *rcptRec) (bool, error)) (int, error) {
	if mu := m.q.stripe(id); !m.held[mu] {
		mu.Lock()
		m.held[mu] = true
	}
	mt, ok, err := m.q.loadMsgIn(m.t, id, nil)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	n, err := mt.changeAll(fn)
	if err != nil || n == 0 {
		return 0, err
	}
	return n, mt.finishWrites()
}

// commit commits the batch synced (abort instead if err is not nil) and
// releases the stripes.
func (m *multi) commit(err error) error {
	if err == nil {
		err = m.t.commit(true)
	} else {
		m.t.abort()
	}
	for mu := range m.held {
		mu.Unlock()
	}
	return err
}

// changeMany applies fnFor(id) to the messages ids (skipping vanished
// ones) in one synced batch; n counts changed recipients if it commits.
func (q *Queue) changeMany(ctx context.Context, ids []string, fnFor func(id string) func(*msgTxn, int, *rcptRec) (bool, error)) (int, error) {
	m := q.newMulti()
	n := 0
	var err error
	for _, id := range ids {
		if err = ctx.Err(); err != nil {
			break
		}
		var k int
		k, err = m.change(id, fnFor(id))
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		if err != nil {
			break
		}
		n += k
	}
	if err := m.commit(err); err != nil {
		return 0, err
	}
	return n, nil
}

// forEachMessage runs one per live message (oldest first), bulkChunk
// messages per synced batch.
func (q *Queue) forEachMessage(ctx context.Context, fn func(mt *msgTxn, idx int, r *rcptRec) (bool, error)) (int, error) {
	q.bulkMu.Lock()
	defer q.bulkMu.Unlock()
	total := 0
	lower := []byte{pMeta}
	for {
		ids, err := q.idsFrom(lower, bulkChunk)
		if err != nil {
			return total, err
		}
		n, err := q.changeMany(ctx, ids, func(string) func(*msgTxn, int, *rcptRec) (bool, error) { return fn })
		total += n
		if err != nil {
			return total, err
		}
		if len(ids) < bulkChunk {
			return total, nil
		}
		lower = append(msgKey(pMeta, ids[len(ids)-1]), 0)
	}
}

func (q *Queue) idsFrom(lower []byte, n int) ([]string, error) {
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pMeta + 1}})
	if err != nil {
		return nil, fmt.Errorf("queue: iterate messages: %w", err)
	}
	defer it.Close()
	var ids []string
	for it.First(); it.Valid() && len(ids) < n; it.Next() {
		ids = append(ids, string(it.Key()[1:]))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("queue: iterate messages: %w", err)
	}
	return ids, nil
}

// bulk runs fn on one message (synced) or, for msgID "", on all.
func (q *Queue) bulk(ctx context.Context, msgID string, fn func(mt *msgTxn, idx int, r *rcptRec) (bool, error)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.exit()
	if msgID != "" {
		if !validID(msgID) {
			return 0, fmt.Errorf("%w: %q", ErrNotFound, msgID)
		}
		return q.change(msgID, true, fn)
	}
	return q.forEachMessage(ctx, fn)
}

// Hold stops delivery of a message's live recipients (msgID "" = all).
// A recipient in flight keeps the result of that attempt; if deferred it
// stays held.
func (q *Queue) Hold(ctx context.Context, msgID string) (int, error) {
	return q.bulk(ctx, msgID, func(mt *msgTxn, idx int, r *rcptRec) (bool, error) {
		if !r.scheduled() {
			return false, nil
		}
		return true, mt.transition(idx, r, StateHeld, 0, Event{Attempt: r.Attempts})
	})
}

// Release makes held recipients due now (msgID "" = all).
func (q *Queue) Release(ctx context.Context, msgID string) (int, error) {
	return q.bulk(ctx, msgID, func(mt *msgTxn, idx int, r *rcptRec) (bool, error) {
		if r.State != StateHeld {
			return false, nil
		}
		to := StateDeferred
		if r.Attempts == 0 {
			to = StateQueued
		}
		r.Forced = true
		return true, mt.transition(idx, r, to, mt.now.UnixNano(), Event{Type: "released", Attempt: r.Attempts})
	})
}

// Delete makes a message's live recipients final (StateDeleted) and
// removes the body.
func (q *Queue) Delete(ctx context.Context, msgID string) (int, error) {
	if msgID == "" {
		return 0, fmt.Errorf("%w: empty message id", ErrNotFound)
	}
	return q.bulk(ctx, msgID, func(mt *msgTxn, idx int, r *rcptRec) (bool, error) {
		if r.State.Final() {
			return false, nil
		}
		return true, mt.transition(idx, r, StateDeleted, 0, Event{Attempt: r.Attempts})
	})
}

// Flush makes every deferred recipient that is not yet due due now,
// 1000 schedule entries per synced batch. Flushed recipients are tried
// even on hosts delivery's dead-host cache marked down (Batch.Forced).
func (q *Queue) Flush(ctx context.Context) (int, error) {
	return q.flush(ctx, nil, true)
}

// FlushDomain is Flush for the recipients of one destination domain
// (petrelctl queue flush --domain, like Postfix's "postqueue -s").
func (q *Queue) FlushDomain(ctx context.Context, domain string) (int, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" {
		return 0, errors.New("queue: flush: empty domain")
	}
	return q.flush(ctx, func(d string) bool { return d == domain }, true)
}

// flush makes the deferred recipients not yet due whose domain match
// accepts (nil: all) due now; forced marks them as an operator's.
func (q *Queue) flush(ctx context.Context, match func(domain string) bool, forced bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.exit()
	q.bulkMu.Lock()
	defer q.bulkMu.Unlock()
	now := q.now().UnixNano()
	lower := schedBound(now + 1)
	total := 0
	for {
		ents, next, err := q.schedFrom(lower, bulkChunk, match)
		if err != nil {
			return total, err
		}
		byMsg := make(map[string]map[int]int64)
		var order []string
		for _, e := range ents {
			if byMsg[e.id] == nil {
				byMsg[e.id] = make(map[int]int64)
				order = append(order, e.id)
			}
			byMsg[e.id][e.idx] = e.due
		}
		n, err := q.changeMany(ctx, order, func(id string) func(*msgTxn, int, *rcptRec) (bool, error) {
			want := byMsg[id]
			return func(mt *msgTxn, idx int, r *rcptRec) (bool, error) {
				due, ok := want[idx]
				if !ok || r.State != StateDeferred || r.Due != due {
					return false, nil
				}
				r.Forced = r.Forced || forced
				return true, mt.transition(idx, r, StateDeferred, now, Event{Type: noEvent})
			}
		})
		total += n
		if err != nil {
			return total, err
		}
		if next == nil {
			break
		}
		lower = next
	}
	return total, nil
}

// schedFrom returns up to n schedule entries from lower on whose domain
// match accepts (nil: all), and the bound to continue from (nil at the
// end of the schedule).
func (q *Queue) schedFrom(lower []byte, n int, match func(string) bool) ([]schedEntry, []byte, error) {
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{pSched + 1}})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: iterate schedule: %w", err)
	}
	defer it.Close()
	var out []schedEntry
	for it.First(); it.Valid(); it.Next() {
		if len(out) == n {
			return out, append([]byte(nil), it.Key()...), nil
		}
		e, err := parseSchedKey(it.Key())
		if err != nil {
			return nil, nil, err
		}
		if match == nil || match(e.domain) {
			out = append(out, e)
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("queue: iterate schedule: %w", err)
	}
	return out, nil, nil
}
