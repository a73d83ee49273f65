package queue

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// rbatch is a group of due recipients of one message and domain waiting
// in memory; rent is one of them with the due time of its s key.
type rbatch struct {
	id     string
	domain string
	ents   []rent
	// meta is the message's m record when the batch comes straight from
	// its enqueue (an m record never changes once written), so handOut
	// need not read it back; nil for batches read from the schedule.
	meta *metaRec
}

type rent struct {
	idx int
	due int64
}

type rkey struct {
	id  string
	idx int
}

// scheduler is the bounded in-memory side of the schedule. Pebble's s keys
// are the truth; the scheduler holds at most ReadyLimit of them in ready
// and remembers which ones it handed out (known) so that no recipient is
// handed out twice concurrently.
type scheduler struct {
	q     *Queue
	limit int

	mu       sync.Mutex
	ready    []*rbatch // FIFO; ready[head:] are live
	head     int
	readyN   int // recipients in ready
	readyMax int // high-water mark of readyN (tests)
	known    map[rkey]struct{}
	wait     chan struct{} // closed and replaced when ready grows
	// overflow: due recipients were left in Pebble for lack of room.
	overflow bool
	// scanFrom: every s key due before it is known or gone.
	scanFrom int64

	kick chan struct{}
}

func (s *scheduler) init(q *Queue) {
	s.q = q
	s.limit = q.opts.ReadyLimit
	s.known = make(map[rkey]struct{})
	s.wait = make(chan struct{})
	s.scanFrom = math.MinInt64
	s.kick = make(chan struct{}, 1)
	s.kick <- struct{}{}
}

func (s *scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *scheduler) sizes() (ready, inflight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyN, len(s.known) - s.readyN
}

// pushLocked appends rb (minus recipients already known) to ready.
func (s *scheduler) pushLocked(rb *rbatch) {
	ents := rb.ents[:0]
	for _, e := range rb.ents {
		k := rkey{rb.id, e.idx}
		if _, dup := s.known[k]; dup {
			continue
		}
		s.known[k] = struct{}{}
		ents = append(ents, e)
	}
	if len(ents) == 0 {
		return
	}
	rb.ents = ents
	s.ready = append(s.ready, rb)
	s.readyN += len(ents)
	s.readyMax = max(s.readyMax, s.readyN)
}

func (s *scheduler) signalLocked() {
	close(s.wait)
	s.wait = make(chan struct{})
}

// committed is called after every commit with the due times of s keys it
// wrote and the batches of new messages (offered to ready if they fit).
func (s *scheduler) committed(dues []int64, fresh []*rbatch) {
	if len(dues) == 0 && len(fresh) == 0 {
		return
	}
	now := s.q.now().UnixNano()
	dueNow := false
	s.mu.Lock()
	for _, d := range dues {
		s.scanFrom = min(s.scanFrom, d)
		dueNow = dueNow || d <= now
	}
	n := 0
	for _, rb := range fresh {
		n += len(rb.ents)
	}
	admitted := n > 0 && s.readyN+n <= s.limit
	if admitted {
		for _, rb := range fresh {
			s.pushLocked(rb)
		}
		s.signalLocked()
	} else if n > 0 {
		s.overflow = true
	}
	s.mu.Unlock()
	if !admitted && dueNow {
		s.poke()
	}
}

// noRescan tells forget that the recipients' s keys are gone or were
// written by a commit that already lowered scanFrom.
const noRescan = math.MaxInt64

// forget drops recipients from known (completed or discarded). If they
// still have s keys that a scan skipped while they were known, rescan is
// the smallest due time among them (math.MinInt64 when unknown).
func (s *scheduler) forget(id string, idxs []int, rescan int64) {
	s.mu.Lock()
	for _, i := range idxs {
		delete(s.known, rkey{id, i})
	}
	if rescan != noRescan {
		s.scanFrom = min(s.scanFrom, rescan)
	}
	s.mu.Unlock()
	if rescan != noRescan {
		s.poke()
	}
}

// rescanIf returns math.MinInt64 if cond, else noRescan.
func rescanIf(cond bool) int64 {
	if cond {
		return math.MinInt64
	}
	return noRescan
}

// pop takes the oldest ready batch, or returns the channel to wait on.
func (s *scheduler) pop() (*rbatch, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == len(s.ready) {
		return nil, s.wait
	}
	rb := s.ready[s.head]
	s.ready[s.head] = nil
	s.head++
	if s.head == len(s.ready) || s.head > 1024 && s.head*2 > len(s.ready) {
		s.ready = append(s.ready[:0], s.ready[s.head:]...)
		s.head = 0
	}
	s.readyN -= len(rb.ents)
	if s.overflow && s.readyN <= s.limit/2 {
		s.poke()
	}
	return rb, nil
}

// scanLoop refills ready from Pebble when poked and every ScanInterval.
func (q *Queue) scanLoop() {
	defer q.wg.Done()
	t := time.NewTicker(q.opts.ScanInterval)
	defer t.Stop()
	var lastRetention time.Time
	for {
		select {
		case <-q.closedCh:
			return
		case <-q.sched.kick:
		case <-t.C:
			if q.retentionDue(&lastRetention) {
				if err := q.expireOld(); err != nil && err != ErrClosed {
					q.log.Error("queue retention", "err", err)
				}
			}
		}
		if err := q.scan(); err != nil && err != ErrClosed {
			q.log.Error("queue scan", "err", err)
		}
	}
}

// scan reads due s keys from scanFrom on, admitting unknown ones into
// ready until it is full. It holds the scheduler lock throughout, so
// commits that land meanwhile lower scanFrom after it is written.
func (q *Queue) scan() error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	s := &q.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	room := s.limit - s.readyN
	if room <= 0 {
		s.overflow = true
		return nil
	}
	now := q.now().UnixNano()
	if s.scanFrom > now {
		return nil
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: schedBound(s.scanFrom), UpperBound: schedBound(now + 1)})
	if err != nil {
		return fmt.Errorf("queue: iterate schedule: %w", err)
	}
	defer it.Close()
	open := make(map[string]*rbatch)
	var got []*rbatch
	next := now + 1
	full := false
	for it.First(); it.Valid(); it.Next() {
		e, err := parseSchedKey(it.Key())
		if err != nil {
			q.log.Error("queue: skipping bad schedule key", "err", err)
			continue
		}
		k := rkey{e.id, e.idx}
		if _, ok := s.known[k]; ok {
			continue
		}
		if room == 0 {
			next, full = e.due, true
			break
		}
		ok := e.id + "\x00" + e.domain
		rb := open[ok]
		if rb == nil || len(rb.ents) >= q.opts.MaxBatchRcpts {
			rb = &rbatch{id: e.id, domain: e.domain}
			open[ok] = rb
			got = append(got, rb)
		}
		rb.ents = append(rb.ents, rent{idx: e.idx, due: e.due})
		room--
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("queue: iterate schedule: %w", err)
	}
	s.scanFrom, s.overflow = next, full
	for _, rb := range got {
		s.pushLocked(rb)
	}
	if len(got) > 0 {
		s.signalLocked()
	}
	return nil
}

// Next blocks until a batch is due and returns it: recipients of one
// message sharing one domain. It returns ErrClosed after Close and
// ctx.Err() when ctx ends.
func (q *Queue) Next(ctx context.Context) (*Batch, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if q.space.paused() {
			// The disk is nearly full: a result could not be recorded.
			select {
			case <-time.After(spaceInterval):
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-q.closedCh:
				return nil, ErrClosed
			}
			continue
		}
		rb, wait := q.sched.pop()
		if rb == nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-q.closedCh:
				return nil, ErrClosed
			}
			continue
		}
		b, err := q.handOut(rb)
		if err != nil {
			return nil, err
		}
		if b != nil {
			return b, nil
		}
	}
}

// handOut checks a ready batch against Pebble (recipients may have been
// held, deleted or rescheduled meanwhile) and expires recipients past
// their lifetime. It returns nil if nothing is left to deliver.
func (q *Queue) handOut(rb *rbatch) (*Batch, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.exit()
	all := make([]int, len(rb.ents))
	for i, e := range rb.ents {
		all[i] = e.idx
	}
	var m metaRec
	ok, err := true, error(nil)
	if rb.meta != nil {
		m = *rb.meta // whether the message is still there, its r keys say
	} else {
		ok, err = getJSON(q.db, "message", msgKey(pMeta, rb.id), &m)
	}
	if err != nil || !ok {
		q.sched.forget(rb.id, all, noRescan)
		if err != nil {
			q.log.Error("queue: dropping unreadable batch", "id", rb.id, "err", err)
		}
		return nil, nil
	}
	if q.now().After(time.Unix(0, m.Created).Add(q.opts.MaxLifetime)) {
		err := q.expireBatch(rb)
		q.sched.forget(rb.id, all, rescanIf(err != nil))
		if err != nil {
			q.log.Error("queue: expire", "id", rb.id, "err", err)
		}
		return nil, nil
	}
	b := &Batch{MsgID: rb.id, Envelope: m.envelope(), Domain: rb.domain, Created: time.Unix(0, m.Created),
		Size: m.Size, Rcpts: make([]Rcpt, 0, len(rb.ents)), meta: &m}
	var stale []int
	rescan := int64(noRescan)
	for _, e := range rb.ents {
		var r rcptRec
		ok, err := getJSON(q.db, "recipient", rcptKey(rb.id, e.idx), &r)
		if err != nil {
			q.log.Error("queue: skipping unreadable recipient", "id", rb.id, "index", e.idx, "err", err)
		}
		if err != nil || !ok || !r.scheduled() || r.Due != e.due {
			stale = append(stale, e.idx)
			if err == nil && ok && r.scheduled() {
				// Rescheduled (held and released) while waiting here: a
				// scan may have skipped its new s key as known.
				rescan = min(rescan, r.Due)
			}
			continue
		}
		b.Rcpts = append(b.Rcpts, Rcpt{Index: e.idx, Addr: r.Addr, Attempts: r.Attempts})
		b.Forced = b.Forced || r.Forced
	}
	if len(stale) > 0 {
		q.sched.forget(rb.id, stale, rescan)
	}
	if len(b.Rcpts) == 0 {
		return nil, nil
	}
	return b, nil
}

// expireBatch expires the still-due recipients of rb.
func (q *Queue) expireBatch(rb *rbatch) error {
	mu := q.stripe(rb.id)
	mu.Lock()
	defer mu.Unlock()
	mt, ok, err := q.loadMsg(rb.id)
	if err != nil || !ok {
		return err
	}
	for _, e := range rb.ents {
		r, err := mt.rcpt(e.idx)
		if err != nil {
			mt.abort()
			return err
		}
		if r == nil || !r.scheduled() || r.Due != e.due {
			continue
		}
		if err := mt.expire(e.idx, r); err != nil {
			mt.abort()
			return err
		}
	}
	return mt.finish(true)
}

// Complete records the results of a batch from Next in one synced batch:
// recipient states, schedule keys, events, the DSN for failures, and the
// message's deletion (leaving a tombstone) when no recipient is live.
// Recipients without a Result stay scheduled as they were. The results
// are recorded even if ctx is already done (a remote 250 must not be
// forgotten because shutdown began); the commit does not block for long.
func (q *Queue) Complete(ctx context.Context, b *Batch, results []Result) error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.exit()
	inBatch := make(map[int]bool, len(b.Rcpts))
	idxs := make([]int, len(b.Rcpts))
	for i, r := range b.Rcpts {
		inBatch[r.Index] = false
		idxs[i] = r.Index
	}
	for _, res := range results {
		done, ok := inBatch[res.Index]
		if !ok || done {
			q.sched.forget(b.MsgID, idxs, math.MinInt64)
			return fmt.Errorf("queue: complete %s: recipient %d is not in the batch or has two results", b.MsgID, res.Index)
		}
		inBatch[res.Index] = true
	}
	missing := len(results) < len(b.Rcpts)
	err := q.complete(b.MsgID, b.meta, results)
	q.sched.forget(b.MsgID, idxs, rescanIf(missing || err != nil))
	return err
}

func (q *Queue) complete(id string, meta *metaRec, results []Result) error {
	mu := q.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	mt, ok, err := q.loadMsgWith(id, meta)
	if err != nil {
		return err
	}
	if !ok {
		// Deleted while in flight: nothing left to record.
		return nil
	}
	for _, res := range results {
		r, err := mt.rcpt(res.Index)
		if err != nil {
			mt.abort()
			return err
		}
		if r == nil || r.State.Final() {
			continue
		}
		if err := mt.apply(res.Index, r, res); err != nil {
			mt.abort()
			return err
		}
	}
	return mt.finish(true)
}
