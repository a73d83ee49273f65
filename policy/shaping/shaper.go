// Package shaping owns Petrel's per-destination traffic shaping: rules
// matched by recipient domain or MX host suffix (so every Google Workspace
// domain shares Gmail's limits), connection and message rate limits,
// automation that throttles, suspends or bounces a destination when its
// replies say so, streams mapped to weighted egress pools, and warm-up
// caps for new sources.
//
// It implements mta.Shaper: delivery asks before each connection and
// each message and reports every reply (DESIGN invariant 6); shaping never
// calls back. State is kept per (stream, egress source, rule key), where
// the rule key is the rule name, or "default:<domain>" for the catch-all
// "default" rule, so a throttled marketing stream never slows
// transactional mail and a suspended IP never blocks another.
//
// The shipped rules are defaults.toml in this directory (embedded); the
// [shaping] config section is laid over them. Warm-up counts are kept in
// memory per UTC calendar day: a restart resets today's counts.
package shaping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
)

// Shaper implements mta.Shaper. It is safe for concurrent use.
type Shaper struct {
	hostname string
	log      *slog.Logger
	m        *metrics

	rs atomic.Pointer[ruleset]

	// reloadMu serialises Reload.
	reloadMu sync.Mutex

	mu      sync.RWMutex
	buckets map[bucketKey]*bucket
	// nextSweep is the map size at which creating a bucket first drops
	// idle ones (evictAfter unused, no permits out, no action active), so
	// per-domain state stays bounded by recent traffic.
	nextSweep  int
	sweepMin   int
	evictAfter time.Duration

	// pick is smooth weighted round-robin state per (pool, rule key).
	pickMu sync.Mutex
	pick   map[pickKey][]int

	warmMu sync.Mutex
	warm   map[warmKey]*dayCount

	// paused maps paused stream names to their reason (PauseStream);
	// copy-on-write under pauseMu, so the delivery path only loads it.
	pauseMu sync.Mutex
	paused  atomic.Pointer[map[string]string]
}

var (
	_ mta.ConnTrier = (*Shaper)(nil)
	_ mta.TLSPolicy = (*Shaper)(nil)
)

type pickKey struct{ pool, key string }

type warmKey struct{ source, rule string }

type dayCount struct {
	day time.Time
	n   int
}

// New compiles cfg over the shipped defaults. hostname is the EHLO name of
// sources that do not set one; reg (may be nil) receives the metrics.
func New(cfg config.ShapingConfig, hostname string, log *slog.Logger, reg *prometheus.Registry) (*Shaper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rs, err := compile(cfg, hostname)
	if err != nil {
		return nil, err
	}
	s := &Shaper{
		hostname:   hostname,
		log:        log,
		m:          newMetrics(reg),
		buckets:    map[bucketKey]*bucket{},
		sweepMin:   4096,
		nextSweep:  4096,
		evictAfter: 10 * time.Minute,
		pick:       map[pickKey][]int{},
		warm:       map[warmKey]*dayCount{},
	}
	s.rs.Store(rs)
	s.paused.Store(&map[string]string{})
	return s, nil
}

// Reload swaps in new rules, pools and schedules atomically. Permits
// already handed out stay valid and are released into the state they came
// from; limits of existing state change in place; active automation
// actions and today's warm-up counts are kept. On error nothing changes.
func (s *Shaper) Reload(cfg config.ShapingConfig) error {
	rs, err := compile(cfg, s.hostname)
	if err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.rs.Store(rs)
	s.pickMu.Lock()
	clear(s.pick)
	s.pickMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.buckets {
		name := b.rule.Load().cfg.Name
		nr, ok := rs.byName[name]
		if !ok {
			nr = rs.def
		}
		b.mu.Lock()
		b.rule.Store(nr)
		b.applyLocked()
		b.mu.Unlock()
	}
	s.log.Info("shaping rules reloaded", "rules", len(rs.byName), "pools", len(rs.pools))
	return nil
}

func streamOf(d mta.Dest) string {
	if d.Stream == "" {
		return "default"
	}
	return d.Stream
}

// bucket returns (creating) the state for k and marks it used at now.
func (s *Shaper) bucket(k bucketKey, r *rule, now time.Time) *bucket {
	s.mu.RLock()
	b := s.buckets[k]
	s.mu.RUnlock()
	if b == nil {
		s.mu.Lock()
		if b = s.buckets[k]; b == nil {
			if len(s.buckets) >= s.nextSweep {
				s.sweepLocked(now)
			}
			b = newBucket(k, r)
			s.buckets[k] = b
		}
		s.mu.Unlock()
	}
	b.lastUsed.Store(now.UnixNano())
	return b
}

// sweepLocked drops buckets that are idle: unused for evictAfter, with no
// connection permit out and no automation action in force.
func (s *Shaper) sweepLocked(now time.Time) {
	cutoff := now.Add(-s.evictAfter).UnixNano()
	for k, b := range s.buckets {
		if b.lastUsed.Load() > cutoff || b.sem.inUse() > 0 {
			continue
		}
		b.mu.Lock()
		active := b.throttle.until.After(now) || b.suspend.until.After(now) || b.bounce.until.After(now)
		if !active && b.timer != nil {
			b.timer.Stop()
		}
		b.mu.Unlock()
		if !active {
			delete(s.buckets, k)
		}
	}
	s.pickMu.Lock()
	clear(s.pick)
	s.pickMu.Unlock()
	s.nextSweep = max(s.sweepMin, 2*len(s.buckets))
}

// AcquireConn implements mta.Shaper: it refuses a paused stream
// (PauseStream), else it picks an egress source of the
// stream's pool by weight (skipping sources suspended for this destination
// or at today's warm-up cap), then waits for a connection slot and the
// connection rate. It refuses with *mta.PolicyError when every
// source is suspended or capped, when a bounce action is active, or when
// the slot or rate wait would exceed max_wait.
func (s *Shaper) AcquireConn(ctx context.Context, d mta.Dest) (mta.ConnPermit, error) {
	p, _, _, err := s.acquireConn(ctx, d, false)
	return p, err
}

// TryAcquireConn implements mta.ConnTrier: AcquireConn, except that
// when every connection slot is taken it returns ok false and the scope
// of that limit at once instead of waiting for a slot.
func (s *Shaper) TryAcquireConn(ctx context.Context, d mta.Dest) (p mta.ConnPermit, scope string, ok bool, err error) {
	return s.acquireConn(ctx, d, true)
}

func (s *Shaper) acquireConn(ctx context.Context, d mta.Dest, try bool) (mta.ConnPermit, string, bool, error) {
	if err := s.pauseRefusal(d); err != nil {
		return mta.ConnPermit{}, "", false, err
	}
	start := time.Now()
	rs := s.rs.Load()
	r, key := rs.match(d)
	stream := streamOf(d)
	p := rs.pool(stream)
	b, src, err := s.pickSource(p, stream, r, key, start)
	if err != nil {
		return mta.ConnPermit{}, "", false, err
	}
	scope := b.key.stream + "\x00" + b.key.source + "\x00" + b.key.key
	if try {
		if !b.sem.tryAcquire() {
			return mta.ConnPermit{}, scope, false, nil
		}
	} else if err := b.sem.acquire(ctx, rs.maxWait); err != nil {
		if errors.Is(err, errSemTimeout) {
			return mta.ConnPermit{}, "", false, &mta.PolicyError{
				Reason: fmt.Sprintf("connection limit %d to %s from %s busy for %v", r.cfg.ConnectionLimit, key, src.egress.Name, rs.maxWait),
				Until:  time.Now().Add(rs.maxWait),
			}
		}
		return mta.ConnPermit{}, "", false, fmt.Errorf("shaping: waiting for a connection slot to %s: %w", key, err)
	}
	if err := waitRate(ctx, b.conn, rs.maxWait, "connection rate", b.key); err != nil {
		b.sem.release()
		return mta.ConnPermit{}, "", false, err
	}
	s.m.observeWait("conn", time.Since(start))
	var released atomic.Bool
	return mta.ConnPermit{
		Egress:      src.egress,
		MaxMessages: r.cfg.MaxDeliveriesPerConnection,
		IdleTimeout: r.cfg.IdleTimeout.Duration,
		TLS:         r.tls,
		Scope:       scope,
		Release: func() {
			if released.CompareAndSwap(false, true) {
				b.sem.release()
			}
		},
	}, scope, true, nil
}

// TLSMode implements mta.TLSPolicy: the TLS mode of the rule that
// matches d.
func (s *Shaper) TLSMode(d mta.Dest) mta.TLSMode {
	r, _ := s.rs.Load().match(d)
	return r.tls
}

// pickSource chooses a source of p by smooth weighted round-robin among
// those not refused for this destination.
func (s *Shaper) pickSource(p *pool, stream string, r *rule, key string, now time.Time) (*bucket, *source, error) {
	var (
		firstErr error
		eligible [8]int
		elig     = eligible[:0]
		bs       [8]*bucket
		bkts     = bs[:0]
	)
	for i, src := range p.sources {
		b := s.bucket(bucketKey{stream: stream, source: src.egress.Name, key: key}, r, now)
		if until, bounce, refused := b.refusal(now); refused {
			if bounce {
				return nil, nil, &mta.PolicyError{Bounce: true, Reason: "bounce action for " + key + ": " + b.reasonOf(true), Until: until}
			}
			if firstErr == nil {
				firstErr = &mta.PolicyError{Reason: "suspended for " + key + ": " + b.reasonOf(false), Until: until}
			}
			continue
		}
		if err := s.warmCheck(src, r, now, false); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		elig = append(elig, i)
		bkts = append(bkts, b)
	}
	if len(elig) == 0 {
		return nil, nil, firstErr
	}
	if len(elig) == 1 {
		return bkts[0], p.sources[elig[0]], nil
	}
	s.pickMu.Lock()
	pk := pickKey{pool: p.name, key: stream + "\x00" + key}
	cur := s.pick[pk]
	if len(cur) != len(p.sources) {
		cur = make([]int, len(p.sources))
		s.pick[pk] = cur
	}
	total, best := 0, -1
	for j, i := range elig {
		cur[i] += p.sources[i].weight
		total += p.sources[i].weight
		if best < 0 || cur[i] > cur[elig[best]] {
			best = j
		}
	}
	cur[elig[best]] -= total
	s.pickMu.Unlock()
	return bkts[best], p.sources[elig[best]], nil
}

// AcquireMessage implements mta.Shaper: it refuses a paused stream
// (PauseStream) and, while a suspend
// or bounce action is active for (stream, egress, rule) or the source's
// warm-up cap for the rule is reached today (deferred until the next UTC
// day), and otherwise waits for the message rate.
func (s *Shaper) AcquireMessage(ctx context.Context, d mta.Dest, egress string) error {
	if err := s.pauseRefusal(d); err != nil {
		return err
	}
	start := time.Now()
	rs := s.rs.Load()
	r, key := rs.match(d)
	b := s.bucket(bucketKey{stream: streamOf(d), source: egress, key: key}, r, start)
	if until, bounce, refused := b.refusal(start); refused {
		if bounce {
			return &mta.PolicyError{Bounce: true, Reason: "bounce action for " + key + ": " + b.reasonOf(true), Until: until}
		}
		return &mta.PolicyError{Reason: "suspended for " + key + ": " + b.reasonOf(false), Until: until}
	}
	src := rs.sources[egress]
	if err := s.warmCheck(src, r, start, false); err != nil {
		return err
	}
	if err := waitRate(ctx, b.msg, rs.maxWait, "message rate", b.key); err != nil {
		return err
	}
	if err := s.warmCheck(src, r, start, true); err != nil {
		return err
	}
	s.m.observeWait("message", time.Since(start))
	return nil
}

// warmCheck refuses when src has reached today's cap for r; with count it
// also counts one message.
func (s *Shaper) warmCheck(src *source, r *rule, now time.Time, count bool) error {
	limit, dayEnd, capped := src.warmCap(r.cfg.Name, now)
	if !capped {
		return nil
	}
	k := warmKey{source: src.egress.Name, rule: r.cfg.Name}
	day := dayEnd.Add(-24 * time.Hour)
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	c := s.warm[k]
	if c == nil {
		c = &dayCount{day: day}
		s.warm[k] = c
	}
	if !c.day.Equal(day) {
		c.day, c.n = day, 0
	}
	if c.n >= limit {
		return &mta.PolicyError{
			Reason: fmt.Sprintf("warm-up cap of %d messages today from %s to %s reached", limit, src.egress.Name, r.cfg.Name),
			Until:  dayEnd,
		}
	}
	if count {
		c.n++
	}
	return nil
}

// waitRate waits for one token of lim, refusing instead when the wait
// would be longer than maxWait.
func waitRate(ctx context.Context, lim *rate.Limiter, maxWait time.Duration, what string, k bucketKey) error {
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return &mta.PolicyError{Reason: what + " is zero for " + k.key}
	}
	delay := res.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	if delay > maxWait {
		res.CancelAt(now)
		return &mta.PolicyError{Reason: fmt.Sprintf("%s limit for %s from %s", what, k.key, k.source), Until: now.Add(delay)}
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return fmt.Errorf("shaping: waiting for %s to %s: %w", what, k.key, ctx.Err())
	}
}

// Observe implements mta.Shaper: it runs the automation rules of the
// destination's rule against the reply and applies matching actions to
// (stream, egress, rule key). Replies 200-399 are not examined.
func (s *Shaper) Observe(d mta.Dest, egress string, code int, enhanced, text string) {
	if code >= 200 && code < 400 {
		return
	}
	rs := s.rs.Load()
	r, key := rs.match(d)
	if len(r.autos) == 0 {
		return
	}
	line := fmt.Sprintf("%d %s %s", code, enhanced, text)
	var b *bucket
	for _, a := range r.autos {
		if !a.matches(code, enhanced, line) {
			continue
		}
		if b == nil {
			b = s.bucket(bucketKey{stream: streamOf(d), source: egress, key: key}, r, time.Now())
		}
		s.apply(b, a, line)
	}
}

// apply counts a match of a on b and starts (or extends) its action once
// the automation's threshold is reached.
func (s *Shaper) apply(b *bucket, a *automation, reason string) {
	now := time.Now()
	until := now.Add(a.cfg.Duration.Duration)
	b.mu.Lock()
	if !b.triggerLocked(a, now) {
		b.mu.Unlock()
		return
	}
	st := actionState{until: until, factor: a.cfg.Factor, reason: reason}
	fresh := false
	switch a.cfg.Action {
	case config.ActionThrottle:
		fresh = b.throttle.until.Before(now)
		if !fresh && b.throttle.factor > 0 && b.throttle.factor < st.factor {
			st.factor = b.throttle.factor // keep the stronger throttle
		}
		if st.until.Before(b.throttle.until) {
			st.until = b.throttle.until
		}
		b.throttle = st
		b.applyLocked()
	case config.ActionSuspend:
		fresh = b.suspend.until.Before(now)
		if fresh {
			s.m.suspended.Inc()
		}
		if st.until.Before(b.suspend.until) {
			st.until = b.suspend.until
		}
		b.suspend = st
		b.suspendUntil.Store(st.until.UnixNano())
	case config.ActionBounce:
		fresh = b.bounce.until.Before(now)
		if st.until.Before(b.bounce.until) {
			st.until = b.bounce.until
		}
		b.bounce = st
		b.bounceUntil.Store(st.until.UnixNano())
	}
	s.armLocked(b, now)
	b.mu.Unlock()
	s.m.actions.WithLabelValues(a.cfg.Action).Inc()
	if fresh {
		s.log.Warn("shaping action", "action", a.cfg.Action, "stream", b.key.stream, "source", b.key.source,
			"rule", b.key.key, "factor", a.cfg.Factor, "until", until, "reply", reason)
	}
}

// armLocked sets b's timer to the earliest pending expiry.
func (s *Shaper) armLocked(b *bucket, now time.Time) {
	next := time.Time{}
	for _, st := range []actionState{b.throttle, b.suspend, b.bounce} {
		if st.until.After(now) && (next.IsZero() || st.until.Before(next)) {
			next = st.until
		}
	}
	if next.IsZero() {
		return
	}
	d := next.Sub(now)
	if b.timer == nil {
		b.timer = time.AfterFunc(d, func() { s.expire(b) })
		return
	}
	b.timer.Reset(d)
}

// expire clears b's actions that have run out and restores its limits.
func (s *Shaper) expire(b *bucket) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.throttle.until.IsZero() && !b.throttle.until.After(now) {
		b.throttle = actionState{}
		b.applyLocked()
		s.log.Info("shaping action expired", "action", config.ActionThrottle, "stream", b.key.stream, "source", b.key.source, "rule", b.key.key)
	}
	if !b.suspend.until.IsZero() && !b.suspend.until.After(now) {
		b.suspend = actionState{}
		s.m.suspended.Dec()
		s.log.Info("shaping action expired", "action", config.ActionSuspend, "stream", b.key.stream, "source", b.key.source, "rule", b.key.key)
	}
	if !b.bounce.until.IsZero() && !b.bounce.until.After(now) {
		b.bounce = actionState{}
		s.log.Info("shaping action expired", "action", config.ActionBounce, "stream", b.key.stream, "source", b.key.source, "rule", b.key.key)
	}
	s.armLocked(b, now)
}

// roundRate keeps Status numbers readable.
func roundRate(r config.Rate) config.Rate {
	r.Count = math.Round(r.Count*1000) / 1000
	return r
}
