package queue

import (
	"context"
	"sync"
	"time"
)

// Early retry after an outage: when a recipient of a domain is delivered
// and the domain has deferred mail (the delivered recipient had been
// deferred itself, or the domain got a deferral since Open), the domain's
// deferred recipients are made due now instead of waiting for their
// retry step. A background loop does it with one schedule scan for every
// domain woken meanwhile (at most one scan per wakeSpacing), and each
// domain at most once per wakeCooldown.
// Due now is not sent at once: the ready set is bounded (ReadyLimit) and
// delivery still asks shaping for every connection and message.
const (
	wakeCooldown = time.Minute
	// maxWakeDomains bounds the memory of domains seen deferred.
	maxWakeDomains = 10000
	// wakeSpacing separates schedule scans: domains woken meanwhile share
	// the next one.
	wakeSpacing = time.Second
)

type wakeups struct {
	mu       sync.Mutex
	deferred map[string]struct{}  // domains with a deferral since Open
	pending  map[string]struct{}  // domains to wake
	last     map[string]time.Time // last wake per domain (cooldown)
	kick     chan struct{}
}

func (w *wakeups) init() {
	w.deferred = make(map[string]struct{})
	w.pending = make(map[string]struct{})
	w.last = make(map[string]time.Time)
	w.kick = make(chan struct{}, 1)
}

// outcome is a committed attempt's effect on wakeups.
type outcome struct {
	domain    string
	delivered bool // else deferred
	retried   bool // delivered after an earlier attempt
}

// committed notes the outcomes of a committed txn.
func (w *wakeups) committed(outs []outcome, now time.Time) {
	if len(outs) == 0 {
		return
	}
	woke := false
	w.mu.Lock()
	for _, o := range outs {
		if !o.delivered {
			if len(w.deferred) < maxWakeDomains {
				w.deferred[o.domain] = struct{}{}
			}
			continue
		}
		_, seen := w.deferred[o.domain]
		if !seen && !o.retried {
			continue
		}
		if now.Sub(w.last[o.domain]) < wakeCooldown {
			continue
		}
		delete(w.deferred, o.domain)
		w.last[o.domain] = now
		w.pending[o.domain] = struct{}{}
		woke = true
	}
	if len(w.last) > maxWakeDomains {
		for d, t := range w.last {
			if now.Sub(t) >= wakeCooldown {
				delete(w.last, d)
			}
		}
	}
	w.mu.Unlock()
	if woke {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (w *wakeups) take() map[string]struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending
	w.pending = make(map[string]struct{})
	return p
}

// wakeLoop makes woken domains' deferred recipients due.
func (q *Queue) wakeLoop() {
	defer q.wg.Done()
	for {
		select {
		case <-q.closedCh:
			return
		case <-q.wake.kick:
		}
		doms := q.wake.take()
		if len(doms) == 0 {
			continue
		}
		n, err := q.flush(context.Background(), func(d string) bool { _, ok := doms[d]; return ok }, false)
		switch {
		case err == ErrClosed:
			return
		case err != nil:
			q.log.Error("queue: early retry", "domains", len(doms), "err", err)
		case n > 0:
			q.log.Info("queue: domain delivered again, retrying its deferred mail now", "domains", len(doms), "recipients", n)
		}
		select {
		case <-q.closedCh:
			return
		case <-time.After(wakeSpacing):
		}
	}
}
