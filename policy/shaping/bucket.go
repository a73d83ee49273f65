package shaping

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/petrel-mta/petrel/config"
)

// sem is a counted semaphore whose limit can change while permits are out
// (reload, throttle). Limit 0 means unlimited.
type sem struct {
	mu    sync.Mutex
	n     int
	limit int
	wake  chan struct{} // closed and replaced when a slot may have freed
}

// errSemTimeout is returned by acquire when maxWait passed.
var errSemTimeout = errors.New("shaping: connection limit wait exceeded max_wait")

// acquire takes a slot, waiting at most maxWait (0 = until ctx ends).
func (s *sem) acquire(ctx context.Context, maxWait time.Duration) error {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		if s.limit == 0 || s.n < s.limit {
			s.n++
			s.mu.Unlock()
			return nil
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		w := s.wake
		s.mu.Unlock()
		if timeout == nil && maxWait > 0 {
			t := time.NewTimer(maxWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-w:
		case <-timeout:
			return errSemTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryAcquire takes a slot if one is free, without waiting.
func (s *sem) tryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit == 0 || s.n < s.limit {
		s.n++
		return true
	}
	return false
}

func (s *sem) broadcastLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

func (s *sem) release() {
	s.mu.Lock()
	s.n--
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *sem) setLimit(l int) {
	s.mu.Lock()
	s.limit = l
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *sem) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// bucketKey identifies one shaping state: per stream, egress source and
// rule key (rule name, or "default:<domain>").
type bucketKey struct {
	stream, source, key string
}

// actionState is one active automation action.
type actionState struct {
	until  time.Time
	factor float64
	reason string
}

// bucket is the shaping state of one (stream, source, rule key).
type bucket struct {
	key  bucketKey
	rule atomic.Pointer[rule]
	sem  sem
	msg  *rate.Limiter
	conn *rate.Limiter

	// suspendUntil and bounceUntil are unix nanoseconds, read lock-free
	// on the hot path.
	suspendUntil atomic.Int64
	bounceUntil  atomic.Int64
	// lastUsed (unix nanoseconds) lets idle state be dropped.
	lastUsed atomic.Int64

	mu sync.Mutex
	// hits are recent match times of automation rules with a threshold.
	hits     map[*automation][]time.Time
	throttle actionState
	suspend  actionState
	bounce   actionState
	timer    *time.Timer
}

func newBucket(k bucketKey, r *rule) *bucket {
	b := &bucket{key: k, msg: rate.NewLimiter(rate.Inf, 1), conn: rate.NewLimiter(rate.Inf, 1)}
	b.rule.Store(r)
	b.mu.Lock()
	b.applyLocked()
	b.mu.Unlock()
	return b
}

// effective returns the rule's rates scaled by an active throttle.
func (b *bucket) effectiveLocked() (msg, conn config.Rate, factor float64) {
	r := b.rule.Load()
	msg, conn = r.cfg.MaxMessageRate, r.cfg.MaxConnectionRate
	if b.throttle.factor > 0 {
		factor = b.throttle.factor
		msg.Count *= factor
		conn.Count *= factor
	}
	return msg, conn, factor
}

// applyLocked pushes the effective limits into the limiters and semaphore.
func (b *bucket) applyLocked() {
	msg, conn, _ := b.effectiveLocked()
	b.msg.SetLimit(limitOf(msg))
	b.conn.SetLimit(limitOf(conn))
	b.sem.setLimit(b.rule.Load().cfg.ConnectionLimit)
}

func limitOf(r config.Rate) rate.Limit {
	if r.Unlimited() {
		return rate.Inf
	}
	return rate.Limit(r.PerSecond())
}

// refusal returns the active suspend or bounce, if any.
func (b *bucket) refusal(now time.Time) (until time.Time, bounce, refused bool) {
	n := now.UnixNano()
	if u := b.bounceUntil.Load(); u > n {
		return time.Unix(0, u), true, true
	}
	if u := b.suspendUntil.Load(); u > n {
		return time.Unix(0, u), false, true
	}
	return time.Time{}, false, false
}

// reasonOf returns the reply that caused the active refusal.
func (b *bucket) reasonOf(bounce bool) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bounce {
		return b.bounce.reason
	}
	return b.suspend.reason
}

// triggerLocked records a match of a at now and reports whether the
// action should run: always without a threshold, else once Threshold
// matches fall within Window (the count then starts again).
func (b *bucket) triggerLocked(a *automation, now time.Time) bool {
	if a.cfg.Threshold <= 1 {
		return true
	}
	if b.hits == nil {
		b.hits = map[*automation][]time.Time{}
	}
	from := now.Add(-a.cfg.Window.Duration)
	hs := b.hits[a]
	i := 0
	for i < len(hs) && !hs[i].After(from) {
		i++
	}
	hs = append(hs[i:], now)
	if len(hs) >= a.cfg.Threshold {
		delete(b.hits, a)
		return true
	}
	b.hits[a] = hs
	return false
}
