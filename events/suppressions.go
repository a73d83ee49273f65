package events

import (
	"context"
	"log/slog"

	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// EventAppender is the part of *queue.Queue SuppressionEvents writes to.
type EventAppender interface {
	AppendEvents(ctx context.Context, evs []queue.Event) error
}

// SuppressionEvents returns policy's OnSuppressionChange hook: each added
// suppression (from any source: bounce rules, unsubscribe, the API)
// becomes a "suppressed" event in q's log, so webhooks and stats see it.
// Removals are not events.
func SuppressionEvents(q EventAppender, log *slog.Logger) func(e suppress.Entry, removed bool) {
	return func(e suppress.Entry, removed bool) {
		if removed {
			return
		}
		ev := queue.Event{Type: "suppressed", Recipient: e.Address, Stream: e.Stream, Reason: string(e.Reason)}
		if err := q.AppendEvents(context.Background(), []queue.Event{ev}); err != nil {
			log.Warn("record suppression event", "err", err)
		}
	}
}
