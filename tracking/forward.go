package tracking

import (
	"context"
	"log/slog"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/internal/poll"
)

// forwardCursor names the engagement log's cursor of the event forwarder.
const forwardCursor = "events"

// Forward copies engagements into the event log as "opened" and
// "clicked" events (so webhooks, metrics and the events API see them),
// a page at a time: one synced append per page, then the page's cursor
// is stored. Engagements are therefore batched into the spool's event log
// (never one synced write per request), at least once: a crash between
// the append and the cursor repeats at most one page. It runs until ctx
// ends, polling every interval when there is nothing new.
func Forward(ctx context.Context, l *Log, to events.EventAppender, interval time.Duration, log *slog.Logger) {
	poll.Run(ctx, interval, nil, log, "forward engagements to the event log", func(ctx context.Context) (int, error) {
		return ForwardOnce(ctx, l, to, 1000)
	})
}

// ForwardOnce forwards up to limit engagements after the cursor and
// returns how many it forwarded.
func ForwardOnce(ctx context.Context, l *Log, to events.EventAppender, limit int) (int, error) {
	after, err := l.Cursor(forwardCursor)
	if err != nil {
		return 0, err
	}
	es, last, err := l.Read(after, limit)
	if err != nil || len(es) == 0 {
		return 0, err
	}
	evs := make([]events.Event, 0, len(es))
	for _, e := range es {
		ev := events.Event{Type: "opened", Time: e.Time, MsgID: e.Message, Recipient: e.Recipient, Campaign: e.Campaign,
			Machine: e.Machine, Reason: e.MachineReason}
		if e.Kind == Click {
			ev.Type, ev.URL = "clicked", e.URL
		}
		evs = append(evs, ev)
	}
	if err := to.AppendEvents(ctx, evs); err != nil {
		return 0, err
	}
	return len(es), l.SetCursor(forwardCursor, last)
}
