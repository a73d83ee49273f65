package delivery

import (
	"context"
	"sync"
	"time"
)

// poolKey identifies connections that may be reused for one another: same
// stream (so the same egress pool), MX host and address. The recipient
// domain is not part of it: every domain served by one MX shares its
// connections (policy still rates each message by its own domain in
// AcquireMessage). The egress source is a property of the connection.
type poolKey struct {
	stream, mxHost, addr string
}

// waiter is a transaction that needs a connection for key. At most one
// waiter per key asks the mta.Shaper for a permit at a time (the acquirer:
// many concurrent permit waits would pile up rate-limiter reservations);
// the others wait for a connection put back for key, or to be promoted
// to acquirer when the current one is done.
type waiter struct {
	key     poolKey
	needTLS bool
	ch      chan *smtpConn // buffered 1: a connection handed over
	promote chan struct{}  // buffered 1: now the acquirer
	// cancel ends the acquirer's permit wait (set under pool.mu; nil
	// before it starts).
	cancel context.CancelFunc
}

// pool keeps idle connections per poolKey and hands connections that are
// put back to transactions waiting for one, so a connection limit full of
// busy connections is waited out by reusing them rather than by waiting
// for a permit to open another.
type pool struct {
	maxIdle     int
	idleTimeout time.Duration
	onClose     func(*smtpConn)

	mu      sync.Mutex
	idle    map[poolKey][]*smtpConn
	waiters map[poolKey][]*waiter
	acq     map[poolKey]*waiter
	closed  bool
}

func newPool(maxIdle int, idleTimeout time.Duration, onClose func(*smtpConn)) *pool {
	return &pool{maxIdle: maxIdle, idleTimeout: idleTimeout, onClose: onClose,
		idle: map[poolKey][]*smtpConn{}, waiters: map[poolKey][]*waiter{}, acq: map[poolKey]*waiter{}}
}

func (p *pool) timeout(c *smtpConn) time.Duration {
	if c.permit.IdleTimeout > 0 {
		return c.permit.IdleTimeout
	}
	return p.idleTimeout
}

// usable reports whether c may carry a transaction that needs TLS.
func usable(c *smtpConn, needTLS bool) bool { return c.tls || !needTLS }

// get returns the most recently used idle connection for k (one with TLS
// when needTLS), closing any that idled too long.
func (p *pool) get(k poolKey, needTLS bool) *smtpConn {
	now := time.Now()
	var stale []*smtpConn
	var c *smtpConn
	p.mu.Lock()
	list := p.idle[k]
	for i := len(list) - 1; i >= 0; i-- {
		cand := list[i]
		if now.Sub(cand.lastUsed) > p.timeout(cand) {
			stale = append(stale, cand)
			list = append(list[:i], list[i+1:]...)
			continue
		}
		if usable(cand, needTLS) {
			c = cand
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.idle, k)
	} else {
		p.idle[k] = list
	}
	p.mu.Unlock()
	for _, s := range stale {
		p.onClose(s)
	}
	return c
}

// put hands c to a transaction waiting for its key (the acquirer last:
// its permit wait is cancelled), or keeps it idle, or closes it when the
// pool is full or closed.
func (p *pool) put(c *smtpConn) {
	c.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.onClose(c)
		return
	}
	for i, w := range p.waiters[c.key] {
		if usable(c, w.needTLS) {
			p.removeWaiterLocked(c.key, i)
			w.ch <- c
			p.mu.Unlock()
			return
		}
	}
	if a := p.acq[c.key]; a != nil && len(a.ch) == 0 && usable(c, a.needTLS) {
		a.ch <- c
		if a.cancel != nil {
			a.cancel()
		}
		p.mu.Unlock()
		return
	}
	if len(p.idle[c.key]) >= p.maxIdle {
		p.mu.Unlock()
		p.onClose(c)
		return
	}
	p.idle[c.key] = append(p.idle[c.key], c)
	p.mu.Unlock()
}

func (p *pool) removeWaiterLocked(k poolKey, i int) {
	ws := p.waiters[k]
	ws = append(ws[:i], ws[i+1:]...)
	if len(ws) == 0 {
		delete(p.waiters, k)
	} else {
		p.waiters[k] = ws
	}
}

// enter registers w; true means w is the acquirer for its key, false that
// it waits (on w.ch and w.promote).
func (p *pool) enter(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.acq[w.key] == nil {
		p.acq[w.key] = w
		return true
	}
	p.waiters[w.key] = append(p.waiters[w.key], w)
	return false
}

// acquiring records the acquirer's cancel func; false if a connection
// was handed to it meanwhile (no permit wait needed).
func (p *pool) acquiring(w *waiter, cancel context.CancelFunc) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.cancel = cancel
	return len(w.ch) == 0
}

// leave deregisters w (promoting the next waiter if w was the acquirer)
// and returns the connection handed to it, if any.
func (p *pool) leave(w *waiter) *smtpConn {
	p.mu.Lock()
	if p.acq[w.key] == w {
		delete(p.acq, w.key)
		if ws := p.waiters[w.key]; len(ws) > 0 {
			next := ws[0]
			p.removeWaiterLocked(w.key, 0)
			p.acq[w.key] = next
			next.promote <- struct{}{}
		}
	} else {
		for i, x := range p.waiters[w.key] {
			if x == w {
				p.removeWaiterLocked(w.key, i)
				break
			}
		}
	}
	p.mu.Unlock()
	select {
	case c := <-w.ch:
		return c
	default:
		return nil
	}
}

// reclaim closes the least recently used idle connection whose permit
// counts against scope, freeing its slot; false if there is none.
func (p *pool) reclaim(scope string) bool {
	if scope == "" {
		return false
	}
	p.mu.Lock()
	var (
		victim *smtpConn
		vk     poolKey
		vi     int
	)
	for k, list := range p.idle {
		for i, c := range list {
			if c.permit.Scope == scope && (victim == nil || c.lastUsed.Before(victim.lastUsed)) {
				victim, vk, vi = c, k, i
			}
		}
	}
	if victim == nil {
		p.mu.Unlock()
		return false
	}
	list := append(p.idle[vk][:vi], p.idle[vk][vi+1:]...)
	if len(list) == 0 {
		delete(p.idle, vk)
	} else {
		p.idle[vk] = list
	}
	p.mu.Unlock()
	p.onClose(victim)
	return true
}

// sweep closes connections idle longer than their timeout.
func (p *pool) sweep() {
	now := time.Now()
	var stale []*smtpConn
	p.mu.Lock()
	for k, list := range p.idle {
		keep := list[:0]
		for _, c := range list {
			if now.Sub(c.lastUsed) > p.timeout(c) {
				stale = append(stale, c)
			} else {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = keep
		}
	}
	p.mu.Unlock()
	for _, c := range stale {
		p.onClose(c)
	}
}

// closeAll closes every idle connection; later puts close immediately
// unless reopen is called.
func (p *pool) closeAll() {
	p.mu.Lock()
	all := p.idle
	p.idle = map[poolKey][]*smtpConn{}
	p.closed = true
	p.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			p.onClose(c)
		}
	}
}

func (p *pool) reopen() {
	p.mu.Lock()
	p.closed = false
	p.mu.Unlock()
}
