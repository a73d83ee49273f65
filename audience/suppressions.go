package audience

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/internal/poll"
)

// EventLog is the MTA's event log as the ESP reads it (*queue.Queue): a
// durable named cursor, as webhooks read it.
type EventLog interface {
	// EventsScan returns matching events and the Seq of the last event
	// it examined, matching or not (queue.Queue.EventsScan).
	EventsScan(ctx context.Context, f events.EventFilter) ([]events.Event, string, error)
	Cursor(name string) (string, error)
	SetCursor(name, seq string) error
}

// suppressionCursor names the event-log cursor of ApplySuppressionEvents.
const suppressionCursor = "esp:contacts"

// statusFor maps a suppression ("suppressed" event) to the contact
// status it implies; ok false leaves contacts alone (a manual
// suppression, or an unsubscribe from a stream other than marketing).
func statusFor(ev events.Event) (Status, bool) {
	switch ev.Reason {
	case "hard_bounce":
		return Bounced, true
	case "complaint":
		return Complained, true
	case "unsubscribe":
		if ev.Stream == "marketing" || ev.Stream == "*" {
			return Unsubscribed, true
		}
	}
	return "", false
}

// ApplySuppressionEvents reads the "suppressed" events after the ESP's
// cursor and makes contacts agree with them: a hard bounce marks every
// contact with that address (in every audience) bounced, a complaint
// complained, a marketing unsubscribe unsubscribed; complaints and
// unsubscribes also append a marketing withdrawal to the consent ledger.
// Erased contacts stay erased. Each page is one transaction, and the
// cursor moves only after it commits (at least once; applying an event
// twice changes nothing). It returns how many events it read.
func (s *Store) ApplySuppressionEvents(ctx context.Context, log EventLog) (int, error) {
	return s.applyEvents(ctx, log, suppressionCursor, []string{"suppressed"}, func(tx *sql.Tx, evs []events.Event) error {
		now := s.opts.Now().UTC().Unix()
		for _, ev := range evs {
			st, ok := statusFor(ev)
			if !ok {
				continue
			}
			_, key, err := NormalizeEmail(ev.Recipient)
			if err != nil {
				continue // not an address we could have stored
			}
			if st != Bounced {
				source := "unsubscribe"
				if st == Complained {
					source = "complaint"
				}
				if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO consent (contact_id, purpose, action, at, source, ip, user_agent, text_version)
					SELECT id, 'marketing', 'withdrawn', ?, ?, '', '', '' FROM contacts WHERE email_key = ? AND status NOT IN ('erased', ?)`),
					now, source, key, string(st)); err != nil {
					return fmt.Errorf("audience: withdraw consent: %w", err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE contacts SET status = ?, updated_at = ? WHERE email_key = ? AND status NOT IN ('erased', ?)`),
				string(st), now, key, string(st)); err != nil {
				return fmt.Errorf("audience: contact status: %w", err)
			}
		}
		return nil
	})
}

// applyEvents reads the next page (up to 1,000) of the events of types
// after cursor, applies it in one transaction, and only then moves the
// cursor past everything examined (at least once: apply must be
// idempotent). A page of other types only moves the cursor. It returns
// how many events it applied.
func (s *Store) applyEvents(ctx context.Context, log EventLog, cursor string, types []string, apply func(tx *sql.Tx, evs []events.Event) error) (int, error) {
	after, err := log.Cursor(cursor)
	if err != nil {
		return 0, err
	}
	evs, scanned, err := log.EventsScan(ctx, events.EventFilter{After: after, Types: types, Limit: 1000})
	if err != nil {
		return 0, err
	}
	if len(evs) == 0 {
		// Nothing but other types since the cursor: move past them, so
		// they are not examined again.
		if scanned == "" || scanned == after {
			return 0, nil
		}
		return 0, log.SetCursor(cursor, scanned)
	}
	if err := s.tx(ctx, func(tx *sql.Tx) error { return apply(tx, evs) }); err != nil {
		return 0, err
	}
	return len(evs), log.SetCursor(cursor, scanned)
}

// follow runs step until ctx ends, every interval when it found nothing.
func follow(ctx context.Context, interval time.Duration, logger *slog.Logger, what string, step func(context.Context) (int, error)) {
	poll.Run(ctx, interval, nil, logger, what, step)
}

// FollowSuppressions runs ApplySuppressionEvents until ctx ends, every
// interval when there is nothing new.
func (s *Store) FollowSuppressions(ctx context.Context, log EventLog, interval time.Duration, logger *slog.Logger) {
	follow(ctx, interval, logger, "apply suppression events to contacts", func(ctx context.Context) (int, error) {
		return s.ApplySuppressionEvents(ctx, log)
	})
}
