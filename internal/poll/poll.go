// Package poll owns the loop every log follower in Petrel runs: do a
// step (forward a page of records after a durable cursor), repeat while
// it makes progress, then wait for a wake-up signal or the interval, and
// retry a failed step after the interval, until the context ends.
package poll

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Step does one unit of work and reports how many records it handled.
type Step func(ctx context.Context) (int, error)

// Run runs step until ctx ends: again at once while it handles records,
// otherwise after interval or when wake (may be nil) signals. An error
// other than ctx's end is logged as what failed and retried after
// interval.
func Run(ctx context.Context, interval time.Duration, wake <-chan struct{}, log *slog.Logger, what string, step Step) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = time.Second
	}
	for {
		n, err := step(ctx)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			log.Warn(what+" (will retry)", "err", err)
		} else if err == nil && n > 0 {
			continue
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}
