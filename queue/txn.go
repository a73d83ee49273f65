package queue

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// txn collects the writes of one state change into one Pebble batch,
// together with its events, counter deltas and scheduler side effects.
type txn struct {
	q      *Queue
	b      *pebble.Batch
	now    time.Time
	events []Event
	deltas [numCounters]int64
	// dues are the due times of s keys written (scheduler lower bound).
	dues []int64
	// fresh are batches of newly enqueued messages, offered to the ready
	// set right after the commit (fast path).
	fresh []*rbatch
	// outs are delivered and deferred attempts (early retry, wake.go).
	outs []outcome
}

func (q *Queue) newTxn() *txn {
	return &txn{q: q, b: q.db.NewBatch(), now: q.now()}
}

func (t *txn) abort() { t.b.Close() }

// addMessage writes m, b, l and one r and s key per distinct recipient,
// plus a received event per recipient.
func (t *txn) addMessage(env Envelope, body []byte) (string, error) {
	return t.addNew(NewMessage{Envelope: env, Body: body})
}

// addNew is addMessage for a NewMessage: a body in Parts is copied
// piece by piece into the batch.
func (t *txn) addNew(nm NewMessage) (string, error) {
	env := nm.Envelope
	rcpts := make([]string, 0, len(env.Recipients))
	seen := make(map[string]struct{}, len(env.Recipients))
	for _, r := range env.Recipients {
		if _, dup := seen[r]; dup {
			continue
		}
		seen[r] = struct{}{}
		rcpts = append(rcpts, r)
	}
	if len(rcpts) == 0 {
		return "", errNoRecipients
	}
	id := newID(t.now)
	now := t.now.UnixNano()
	m := metaRec{From: env.From, Rcpts: rcpts, Stream: env.Stream, Tenant: env.Tenant,
		Campaign: env.Campaign, Source: env.Source, Size: int64(nm.Len()), Created: now}
	b := t.b
	if err := b.Set(msgKey(pMeta, id), mustJSON(&m), nil); err != nil {
		return "", fmt.Errorf("queue: batch: %w", err)
	}
	bk := msgKey(pBody, id)
	op := b.SetDeferred(len(bk), nm.Len())
	copy(op.Key, bk)
	if nm.Body != nil {
		copy(op.Value, nm.Body)
	} else {
		v := op.Value[:0]
		for _, p := range nm.Parts {
			v = append(v, p...)
		}
	}
	if err := op.Finish(); err != nil {
		return "", fmt.Errorf("queue: batch: %w", err)
	}
	if err := b.Set(msgKey(pLive, id), binary.AppendUvarint(nil, uint64(len(rcpts))), nil); err != nil {
		return "", fmt.Errorf("queue: batch: %w", err)
	}
	open := make(map[string]*rbatch)
	for i, addr := range rcpts {
		r := rcptRec{Addr: addr, State: StateQueued, Due: now, Updated: now}
		dom := domainOf(addr)
		if err := b.Set(rcptKey(id, i), mustJSON(&r), nil); err != nil {
			return "", fmt.Errorf("queue: batch: %w", err)
		}
		if err := b.Set(schedKey(now, dom, id, i), nil, nil); err != nil {
			return "", fmt.Errorf("queue: batch: %w", err)
		}
		rb := open[dom]
		if rb == nil || len(rb.ents) >= t.q.opts.MaxBatchRcpts {
			rb = &rbatch{id: id, domain: dom, meta: &m}
			open[dom] = rb
			t.fresh = append(t.fresh, rb)
		}
		rb.ents = append(rb.ents, rent{idx: i, due: now})
		t.events = append(t.events, Event{Type: "received", Time: t.now, MsgID: id, Recipient: addr,
			Stream: env.Stream, Campaign: env.Campaign, Sender: env.From})
	}
	t.dues = append(t.dues, now)
	t.deltas[cntQueued] += int64(len(rcpts))
	t.deltas[cntMessages]++
	return id, nil
}

// commit writes events and counters and commits the batch (synced when
// sync is set), then updates memory and calls OnEvent.
func (t *txn) commit(sync bool) error {
	q := t.q
	defer t.b.Close()
	// Pebble cannot survive a failed WAL write: refuse before it.
	if err := q.space.commitOK(int64(t.b.Len())); err != nil {
		return err
	}
	var first uint64
	if len(t.events) > 0 {
		first = q.allocSeq(len(t.events))
		defer q.releaseSeq(first)
		for i := range t.events {
			ev := &t.events[i]
			ev.Seq = seqString(first + uint64(i))
			if err := t.b.Set(eventKey(first+uint64(i)), mustJSON(ev), nil); err != nil {
				return fmt.Errorf("queue: batch: %w", err)
			}
		}
	}
	for i, d := range t.deltas {
		if d != 0 {
			if err := t.b.Merge(counterKey(i), binary.AppendVarint(nil, d), nil); err != nil {
				return fmt.Errorf("queue: batch: %w", err)
			}
		}
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := t.b.Commit(wo); err != nil {
		return fmt.Errorf("queue: commit: %w", err)
	}
	for i, d := range t.deltas {
		if d != 0 {
			q.counters[i].Add(d)
		}
	}
	q.sched.committed(t.dues, t.fresh)
	q.wake.committed(t.outs, t.now)
	if q.opts.OnEvent != nil {
		for _, ev := range t.events {
			q.opts.OnEvent(ev)
		}
	}
	return nil
}

// allocSeq reserves n consecutive event seqs; they stay pending (hidden
// from Events) until releaseSeq, so a reader never skips an event that
// commits after a later one.
func (q *Queue) allocSeq(n int) uint64 {
	q.evMu.Lock()
	defer q.evMu.Unlock()
	first := uint64(q.now().UnixNano())
	if first <= q.lastSeq {
		first = q.lastSeq + 1
	}
	q.lastSeq = first + uint64(n) - 1
	q.pending[first] = struct{}{}
	return first
}

func (q *Queue) releaseSeq(first uint64) {
	q.evMu.Lock()
	delete(q.pending, first)
	q.evMu.Unlock()
}

// visibleSeq is the exclusive upper bound of seqs whose batches committed.
func (q *Queue) visibleSeq() uint64 {
	q.evMu.Lock()
	defer q.evMu.Unlock()
	bound := q.lastSeq + 1
	for s := range q.pending {
		if s < bound {
			bound = s
		}
	}
	return bound
}

// msgTxn is a txn about one existing message; the caller holds the
// message's stripe lock from load to commit.
type msgTxn struct {
	*txn
	id   string
	meta metaRec
	live int
	// rcpts holds recipients read or changed in this txn.
	rcpts    map[int]*rcptRec
	failures []Failure
	// shared: the txn belongs to a caller batching several messages; it
	// commits or aborts it, so abort and finish leave it alone.
	shared bool
}

// abort discards the txn unless it is shared (then the caller, seeing
// the error, aborts it).
func (mt *msgTxn) abort() {
	if !mt.shared {
		mt.txn.abort()
	}
}

// loadMsg reads a message's m and l keys; found is false if it is gone.
func (q *Queue) loadMsg(id string) (*msgTxn, bool, error) {
	return q.loadMsgWith(id, nil)
}

// loadMsgWith is loadMsg with the m record already known (it never
// changes once written); only the l key is read to see the message is
// still there.
func (q *Queue) loadMsgWith(id string, meta *metaRec) (*msgTxn, bool, error) {
	return q.loadMsgIn(nil, id, meta)
}

// loadMsgIn is loadMsgWith writing into t (shared by several messages,
// committed by the caller) instead of a txn of its own when t is not nil.
func (q *Queue) loadMsgIn(t *txn, id string, meta *metaRec) (*msgTxn, bool, error) {
	mt := &msgTxn{txn: t, shared: t != nil, id: id, rcpts: make(map[int]*rcptRec)}
	if t == nil {
		mt.txn = q.newTxn()
	}
	if meta != nil {
		mt.meta = *meta
	} else {
		ok, err := getJSON(q.db, "message", msgKey(pMeta, id), &mt.meta)
		if err != nil || !ok {
			mt.abort()
			return nil, ok, err
		}
	}
	v, ok, err := get(q.db, msgKey(pLive, id))
	if err != nil {
		mt.abort()
		return nil, false, err
	}
	if !ok {
		mt.abort()
		if meta != nil {
			return nil, false, nil // finished or deleted meanwhile
		}
		return nil, false, fmt.Errorf("queue: message %s has no live count", id)
	}
	n, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) || n > uint64(len(mt.meta.Rcpts)) {
		mt.abort()
		return nil, false, fmt.Errorf("queue: corrupt live count %x for message %s", v, id)
	}
	mt.live = int(n)
	return mt, true, nil
}

// rcpt returns recipient idx (nil if absent).
func (mt *msgTxn) rcpt(idx int) (*rcptRec, error) {
	if r, ok := mt.rcpts[idx]; ok {
		return r, nil
	}
	r := new(rcptRec)
	ok, err := getJSON(mt.q.db, "recipient", rcptKey(mt.id, idx), r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	mt.rcpts[idx] = r
	return r, nil
}

// eachRcpt calls fn for every recipient of the message in index order.
func (mt *msgTxn) eachRcpt(fn func(idx int, r *rcptRec) error) error {
	lo, hi := rcptPrefix(mt.id)
	it, err := mt.q.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("queue: iterate recipients: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		_, idx, err := parseRcptKey(it.Key())
		if err != nil {
			return err
		}
		r, ok := mt.rcpts[idx]
		if !ok {
			r = new(rcptRec)
			if err := decode("recipient", it.Key(), it.Value(), r); err != nil {
				return err
			}
			mt.rcpts[idx] = r
		}
		if err := fn(idx, r); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("queue: iterate recipients: %w", err)
	}
	return nil
}

// transition moves recipient idx to state to (due is the new due time when
// to is queued or deferred), keeping s keys, counters, the live count and
// events in step. ev.Type defaults to the new state.
func (mt *msgTxn) transition(idx int, r *rcptRec, to RcptState, due int64, ev Event) error {
	from := r.State
	dom := domainOf(r.Addr)
	b := mt.b
	if r.scheduled() {
		if err := b.Delete(schedKey(r.Due, dom, mt.id, idx), nil); err != nil {
			return fmt.Errorf("queue: batch: %w", err)
		}
	}
	if c := stateCounter(from); c >= 0 {
		mt.deltas[c]--
	}
	if c := stateCounter(to); c >= 0 {
		mt.deltas[c]++
	}
	if !from.Final() && to.Final() {
		mt.live--
	}
	r.State = to
	r.Due = 0
	r.Updated = mt.now.UnixNano()
	if r.scheduled() {
		r.Due = due
		if err := b.Set(schedKey(due, dom, mt.id, idx), nil, nil); err != nil {
			return fmt.Errorf("queue: batch: %w", err)
		}
		mt.dues = append(mt.dues, due)
	}
	if err := b.Set(rcptKey(mt.id, idx), mustJSON(r), nil); err != nil {
		return fmt.Errorf("queue: batch: %w", err)
	}
	if ev.Type == "" {
		ev.Type = string(to)
	}
	if ev.Type != noEvent {
		ev.Time, ev.MsgID, ev.Recipient = mt.now, mt.id, r.Addr
		ev.Stream, ev.Campaign = mt.meta.Stream, mt.meta.Campaign
		mt.events = append(mt.events, ev)
	}
	if to == StateBounced || to == StateExpired {
		mt.failures = append(mt.failures, Failure{Rcpt: r.Addr, State: to, Code: r.Code,
			Enhanced: r.Enhanced, Reply: r.Reply, RemoteMX: r.RemoteMX, Reason: r.Reason})
	}
	return nil
}

// noEvent as an Event type makes transition record no event (a flush
// moves a due time; it changes no state).
const noEvent = "-"

// apply records the outcome of one delivery attempt.
func (mt *msgTxn) apply(idx int, r *rcptRec, res Result) error {
	r.Forced = false
	r.Code, r.Enhanced, r.Reply, r.RemoteMX, r.Reason = res.Code, res.Enhanced, res.Reply, res.RemoteMX, res.Reason
	if res.SourceIP != "" {
		r.SourceIP = res.SourceIP
	}
	ev := Event{RemoteMX: res.RemoteMX, Code: res.Code, Enhanced: res.Enhanced, Reply: res.Reply, Reason: res.Reason, SourceIP: res.SourceIP}
	var to RcptState
	var due int64
	switch res.Outcome {
	case Delivered:
		r.Attempts++
		to = StateDelivered
		mt.outs = append(mt.outs, outcome{domain: domainOf(r.Addr), delivered: true, retried: r.Attempts > 1})
	case Bounced:
		r.Attempts++
		to = StateBounced
	case Suppressed:
		to = StateSuppressed
	case Deferred:
		r.Attempts++
		ev.Type = "deferred"
		if r.State == StateHeld {
			// Held while in flight: stays held, unscheduled.
			to = StateHeld
			break
		}
		next := mt.now.Add(mt.q.retryDelay(r.Attempts))
		if next.After(time.Unix(0, mt.meta.Created).Add(mt.q.opts.MaxLifetime)) {
			to, ev.Type = StateExpired, ""
			r.Reason, ev.Reason = "expired", "expired"
			break
		}
		to, due = StateDeferred, next.UnixNano()
		mt.outs = append(mt.outs, outcome{domain: domainOf(r.Addr)})
	default:
		return fmt.Errorf("queue: recipient %d of %s: unknown outcome %d", idx, mt.id, res.Outcome)
	}
	ev.Attempt = r.Attempts
	return mt.transition(idx, r, to, due, ev)
}

// expire makes a due recipient whose lifetime has passed final.
func (mt *msgTxn) expire(idx int, r *rcptRec) error {
	r.Reason = "expired"
	return mt.transition(idx, r, StateExpired, 0, Event{Reason: "expired", Reply: r.Reply,
		Code: r.Code, Enhanced: r.Enhanced, RemoteMX: r.RemoteMX, Attempt: r.Attempts, SourceIP: r.SourceIP})
}

// finish writes the live count, or, when no recipient is live any more,
// replaces the message by its tombstone; and enqueues the DSN for
// failures. Then it commits (unless the txn is shared).
func (mt *msgTxn) finish(sync bool) error {
	if err := mt.finishWrites(); err != nil {
		return err
	}
	if mt.shared {
		return nil
	}
	return mt.commit(sync)
}

// finishWrites is finish without the commit; on error the txn is
// aborted (unless shared).
func (mt *msgTxn) finishWrites() error {
	q := mt.q
	if len(mt.failures) > 0 && mt.meta.From != "" && q.opts.OnFailure != nil {
		body, ok, err := get(q.db, msgKey(pBody, mt.id))
		if err != nil {
			mt.abort()
			return err
		}
		if !ok {
			mt.abort()
			return fmt.Errorf("queue: message %s has no body", mt.id)
		}
		if nm := q.opts.OnFailure(mt.id, mt.meta.envelope(), body, mt.failures); nm != nil {
			if _, err := mt.addNew(*nm); err != nil {
				mt.abort()
				return fmt.Errorf("queue: enqueue DSN for %s: %w", mt.id, err)
			}
		}
	}
	if mt.live > 0 {
		if err := mt.b.Set(msgKey(pLive, mt.id), binary.AppendUvarint(nil, uint64(mt.live)), nil); err != nil {
			mt.abort()
			return fmt.Errorf("queue: batch: %w", err)
		}
		return nil
	}
	info := MessageInfo{ID: mt.id, From: mt.meta.From, Stream: mt.meta.Stream, Campaign: mt.meta.Campaign,
		Source: mt.meta.Source, Size: mt.meta.Size, Created: time.Unix(0, mt.meta.Created).UTC()}
	collect := func(idx int, r *rcptRec) error {
		info.Recipients = append(info.Recipients, r.info(mt.id, idx))
		return nil
	}
	if len(mt.rcpts) == len(mt.meta.Rcpts) {
		// Every recipient is already in hand: no iterator needed.
		for i := range mt.meta.Rcpts {
			if r := mt.rcpts[i]; r != nil {
				collect(i, r)
			}
		}
	} else if err := mt.eachRcpt(collect); err != nil {
		mt.abort()
		return err
	}
	b := mt.b
	// Point deletes, not DeleteRange: many small range tombstones in the
	// memtable make every read re-fragment them.
	for i := range mt.meta.Rcpts {
		if err := b.Delete(rcptKey(mt.id, i), nil); err != nil {
			mt.abort()
			return fmt.Errorf("queue: batch: %w", err)
		}
	}
	for _, err := range []error{
		b.Set(msgKey(pTomb, mt.id), mustJSON(&info), nil),
		b.Delete(msgKey(pMeta, mt.id), nil),
		b.Delete(msgKey(pBody, mt.id), nil),
		b.Delete(msgKey(pLive, mt.id), nil),
	} {
		if err != nil {
			mt.abort()
			return fmt.Errorf("queue: batch: %w", err)
		}
	}
	mt.deltas[cntMessages]--
	return nil
}
