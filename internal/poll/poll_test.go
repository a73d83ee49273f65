package poll

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun: a step that makes progress runs again at once; an idle one
// waits for the wake signal (not the long interval); a failing one is
// retried after the interval; Run returns when ctx ends.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{}, 1)
	var calls atomic.Int32
	pending := atomic.Int32{}
	pending.Store(3)
	fail := atomic.Bool{}
	done := make(chan struct{})
	go func() {
		Run(ctx, 50*time.Millisecond, wake, nil, "test step", func(context.Context) (int, error) {
			calls.Add(1)
			if fail.Load() {
				fail.Store(false)
				return 0, errors.New("boom")
			}
			if pending.Load() > 0 {
				pending.Add(-1)
				return 1, nil
			}
			return 0, nil
		})
		close(done)
	}()
	waitUntil(t, func() bool { return pending.Load() == 0 && calls.Load() >= 4 })
	before := calls.Load()
	pending.Store(1)
	wake <- struct{}{}
	waitUntil(t, func() bool { return calls.Load() >= before+2 }) // the woken step and the idle one after it
	fail.Store(true)
	wake <- struct{}{}
	waitUntil(t, func() bool { return !fail.Load() })
	after := calls.Load()
	waitUntil(t, func() bool { return calls.Load() > after }) // retried after the interval without a wake
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
