package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/petrel-mta/petrel/internal/poll"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// SuppressionOutbox is the suppression store's outbox (*suppress.Store):
// suppression changes committed with the change itself, waiting for their
// event (ARCHITECTURE.md invariant 9).
type SuppressionOutbox interface {
	Outbox(limit int) ([]suppress.Change, error)
	AckOutbox(seq uint64) error
	OutboxReady() <-chan struct{}
}

// Event is one record of the event log (queue.Event). The ESP layer,
// which may not import the queue (ARCHITECTURE.md), names it through
// this package.
type Event = queue.Event

// EventFilter selects events of the log (queue.EventFilter).
type EventFilter = queue.EventFilter

// EventAppender appends events to the event log (*queue.Queue).
type EventAppender interface {
	AppendEvents(ctx context.Context, evs []queue.Event) error
}

// outboxPage is how many changes one forwarding pass handles per commit.
const outboxPage = 1000

// DrainSuppressions forwards every change in ob to the event log and
// acknowledges it, page by page, until the outbox is empty: an added
// suppression becomes a "suppressed" event carrying the entry's address,
// stream, reason and time (so a duplicate after a crash is identical);
// a removal has no event. It returns how many events it appended.
func DrainSuppressions(ctx context.Context, ob SuppressionOutbox, log EventAppender) (int, error) {
	n := 0
	for {
		changes, err := ob.Outbox(outboxPage)
		if err != nil {
			return n, err
		}
		if len(changes) == 0 {
			return n, nil
		}
		evs := make([]queue.Event, 0, len(changes))
		for _, c := range changes {
			if c.Removed {
				continue
			}
			evs = append(evs, queue.Event{Type: "suppressed", Time: c.Entry.Time, Recipient: c.Entry.Address,
				Stream: c.Entry.Stream, Reason: string(c.Entry.Reason)})
		}
		if err := log.AppendEvents(ctx, evs); err != nil {
			return n, fmt.Errorf("events: append suppression events: %w", err)
		}
		if err := ob.AckOutbox(changes[len(changes)-1].Seq); err != nil {
			return n, err
		}
		n += len(evs)
	}
}

// ForwardSuppressions runs DrainSuppressions whenever the outbox signals
// new changes, and every 5 s (a retry after a failure), until ctx ends.
// Call DrainSuppressions once before accepting mail so changes committed
// before a crash get their events first.
func ForwardSuppressions(ctx context.Context, ob SuppressionOutbox, log EventAppender, logger *slog.Logger) {
	poll.Run(ctx, 5*time.Second, ob.OutboxReady(), logger, "forward suppression events", func(ctx context.Context) (int, error) {
		// DrainSuppressions empties the outbox: nothing is left for an
		// immediate second pass, so report no progress and wait for the
		// next signal.
		_, err := DrainSuppressions(ctx, ob, log)
		return 0, err
	})
}
