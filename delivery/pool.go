package delivery

import (
	"sync"
	"time"
)

// poolKey identifies connections that may be reused for one another: same
// stream (so the same egress choice), recipient domain (policy counts
// connections per Dest), MX host and address.
type poolKey struct {
	stream, domain, mxHost, addr string
}

// pool keeps idle connections per poolKey.
type pool struct {
	maxIdle     int
	idleTimeout time.Duration
	onClose     func(*smtpConn)

	mu     sync.Mutex
	idle   map[poolKey][]*smtpConn
	closed bool
}

func newPool(maxIdle int, idleTimeout time.Duration, onClose func(*smtpConn)) *pool {
	return &pool{maxIdle: maxIdle, idleTimeout: idleTimeout, onClose: onClose, idle: map[poolKey][]*smtpConn{}}
}

func (p *pool) timeout(c *smtpConn) time.Duration {
	if c.permit.IdleTimeout > 0 {
		return c.permit.IdleTimeout
	}
	return p.idleTimeout
}

// get returns the most recently used idle connection for k, closing any
// that idled too long.
func (p *pool) get(k poolKey) *smtpConn {
	now := time.Now()
	var stale []*smtpConn
	var c *smtpConn
	p.mu.Lock()
	list := p.idle[k]
	for len(list) > 0 {
		last := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(last.lastUsed) > p.timeout(last) {
			stale = append(stale, last)
			continue
		}
		c = last
		break
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

// put returns c to the pool, or closes it when the pool is full or closed.
func (p *pool) put(c *smtpConn) {
	c.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[c.key]) >= p.maxIdle {
		p.mu.Unlock()
		p.onClose(c)
		return
	}
	p.idle[c.key] = append(p.idle[c.key], c)
	p.mu.Unlock()
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
