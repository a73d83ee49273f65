package audience

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/events"
)

// engagementCursor names the event-log cursor of ApplyEngagementEvents.
const engagementCursor = "esp:engagement"

// ApplyEngagementEvents reads the "delivered", "opened" and "clicked"
// events after the ESP's cursor and keeps the contacts' last_sent,
// last_opened and last_clicked (the engagement variables of segments and
// flows) up to date:
//   - a delivered message of a campaign or flow (an event with a
//     campaign) moves last_sent of every contact with that address;
//   - a human open or click (tracking's events, whose recipient is the
//     contact id its token carries) moves that contact's last_opened or
//     last_clicked; machine opens and clicks (scanners, Apple MPP) do not.
//
// Values only move forward (the later of stored and new), so an event
// applied twice — the at-least-once repeat after a crash between the
// page's commit and the cursor — changes nothing. Each page is one
// transaction; the cursor moves only after it commits.
func (s *Store) ApplyEngagementEvents(ctx context.Context, log EventLog) (int, error) {
	return s.applyEvents(ctx, log, engagementCursor, []string{"delivered", "opened", "clicked"}, func(tx *sql.Tx, evs []events.Event) error {
		for _, ev := range evs {
			at := ev.Time.Unix()
			switch ev.Type {
			case "delivered":
				if ev.Campaign == "" {
					continue // transactional mail outside campaigns and flows
				}
				_, key, err := NormalizeEmail(ev.Recipient)
				if err != nil {
					continue
				}
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE contacts SET last_sent = ? WHERE email_key = ? AND status <> 'erased' AND (last_sent IS NULL OR last_sent < ?)`),
					at, key, at); err != nil {
					return fmt.Errorf("audience: last_sent: %w", err)
				}
			case "opened", "clicked":
				id, err := strconv.ParseInt(ev.Recipient, 10, 64)
				if err != nil || ev.Machine {
					continue // not a contact id (a transactional token), or not a person
				}
				col := "last_opened"
				if ev.Type == "clicked" {
					col = "last_clicked"
				}
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE contacts SET `+col+` = ? WHERE id = ? AND status <> 'erased' AND (`+col+` IS NULL OR `+col+` < ?)`),
					at, id, at); err != nil {
					return fmt.Errorf("audience: %s: %w", col, err)
				}
			}
		}
		return nil
	})
}

// FollowEngagement runs ApplyEngagementEvents until ctx ends, every
// interval when there is nothing new.
func (s *Store) FollowEngagement(ctx context.Context, log EventLog, interval time.Duration, logger *slog.Logger) {
	follow(ctx, interval, logger, "apply engagement events to contacts", func(ctx context.Context) (int, error) {
		return s.ApplyEngagementEvents(ctx, log)
	})
}
