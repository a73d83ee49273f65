package delivery

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// hosts is the dead-host cache, as Postfix's: after a connection to an
// MX address fails (connect error, or the connection lost before the
// greeting) the address is marked down for a while that starts at min and
// doubles with each further failure up to max, and is reset by a
// successful connection. While it is down, batches for it are deferred
// without connecting. An address not known to be up is probed by one
// transaction at a time: the others wait for that probe's outcome, so a
// destination that refuses connections costs one connect, not one per
// queued message.
type hosts struct {
	min, max time.Duration
	now      func() time.Time

	mu sync.Mutex
	m  map[netip.AddrPort]*hostState
}

type hostState struct {
	up        bool
	downUntil time.Time
	backoff   time.Duration
	lastErr   string
	// probe is closed when the probing transaction's connect ends; nil
	// when none is in flight.
	probe chan struct{}
}

func newHosts(min, max time.Duration) *hosts {
	return &hosts{min: min, max: max, now: time.Now, m: make(map[netip.AddrPort]*hostState)}
}

func (h *hosts) enabled() bool { return h.min > 0 }

// acquire is asked before connecting to addr. It returns down (with the
// reply to defer with) when addr is marked down; otherwise the caller
// connects, and, when probe is true, must call endProbe(addr) when its
// connect attempt is over. It waits while another transaction probes
// addr (until ctx ends).
func (h *hosts) acquire(ctx context.Context, addr netip.AddrPort) (probe bool, down string, err error) {
	if !h.enabled() {
		return false, "", nil
	}
	for {
		h.mu.Lock()
		st := h.m[addr]
		if st == nil {
			st = &hostState{}
			h.m[addr] = st
		}
		now := h.now()
		switch {
		case now.Before(st.downUntil):
			h.mu.Unlock()
			return false, fmt.Sprintf("local: host %s marked down until %s after a connection failure (%s)",
				addr, st.downUntil.UTC().Format(time.RFC3339), st.lastErr), nil
		case st.up:
			h.mu.Unlock()
			return false, "", nil
		case st.probe == nil:
			st.probe = make(chan struct{})
			h.mu.Unlock()
			return true, "", nil
		}
		ch := st.probe
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false, "", ctx.Err()
		}
	}
}

// endProbe ends a probe started by acquire (whatever its outcome).
func (h *hosts) endProbe(addr netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.m[addr]; st != nil && st.probe != nil {
		close(st.probe)
		st.probe = nil
	}
}

// succeeded records a connection to addr that got its greeting.
func (h *hosts) succeeded(addr netip.AddrPort) {
	if !h.enabled() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.m[addr]
	if st == nil {
		st = &hostState{}
		h.m[addr] = st
	}
	st.up, st.downUntil, st.backoff, st.lastErr = true, time.Time{}, 0, ""
}

// failed marks addr down after a connection failure.
func (h *hosts) failed(addr netip.AddrPort, reason string) {
	if !h.enabled() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.m[addr]
	if st == nil {
		st = &hostState{}
		h.m[addr] = st
	}
	switch {
	case st.backoff == 0:
		st.backoff = h.min
	case h.now().Before(st.downUntil):
		// Already down (a concurrent connect failed too): no extra step.
	default:
		st.backoff = min(2*st.backoff, h.max)
	}
	st.up = false
	st.downUntil = h.now().Add(st.backoff)
	st.lastErr = reason
}

// down counts addresses marked down now.
func (h *hosts) down() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	now, n := h.now(), 0
	for _, st := range h.m {
		if now.Before(st.downUntil) {
			n++
		}
	}
	return n
}

// prune forgets addresses that are neither up nor down nor probed, and
// whose last failure is older than max (their back-off would restart).
func (h *hosts) prune() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for a, st := range h.m {
		if !st.up && st.probe == nil && now.After(st.downUntil.Add(h.max)) {
			delete(h.m, a)
		}
	}
}
