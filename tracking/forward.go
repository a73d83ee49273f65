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
//
// Under load it does not chase the writer page by page: after a page
// that was not full it waits forwardGap, so the event log gets one
// append (one sync) per forwardGap of traffic, and its followers (flows,
// contacts, webhooks) wake as often, rather than one small synced append
// per few engagements competing with the MTA's spool writes and the
// tracker's requests for the CPU.
func Forward(ctx context.Context, l *Log, to events.EventAppender, interval time.Duration, log *slog.Logger) {
	poll.Run(ctx, interval, nil, log, "forward engagements to the event log", func(ctx context.Context) (int, error) {
		n, err := ForwardOnce(ctx, l, to, forwardPage)
		if err == nil && n > 0 && n < forwardPage {
			t := time.NewTimer(forwardGap)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
		return n, err
	})
}

// forwardPage and forwardGap pace Forward: pages of up to forwardPage
// engagements, at least forwardGap apart unless the last was full.
const (
	forwardPage = 5000
	forwardGap  = 100 * time.Millisecond
)

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
