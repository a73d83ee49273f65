package audience

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Subscription is one audience (list) an address is a contact of, as
// the preference centre shows it.
type Subscription struct {
	AudienceID int64  `json:"audience_id"`
	Audience   string `json:"audience"`
	ContactID  int64  `json:"contact_id"`
	Status     Status `json:"status"`
	// Subscribed is true while the list may mail the contact: status
	// active or pending.
	Subscribed bool `json:"subscribed"`
}

// Subscriptions returns every audience the address is a contact of
// (erased contacts left out), by audience name.
func (s *Store) Subscriptions(ctx context.Context, email string) ([]Subscription, error) {
	_, key, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT a.id, a.name, c.id, c.status FROM contacts c JOIN audiences a ON a.id = c.audience_id
		WHERE c.email_key = ? AND c.status <> 'erased' ORDER BY a.name, a.id`), key)
	if err != nil {
		return nil, fmt.Errorf("audience: subscriptions: %w", err)
	}
	defer rows.Close()
	out := []Subscription{}
	for rows.Next() {
		var sub Subscription
		if err := rows.Scan(&sub.AudienceID, &sub.Audience, &sub.ContactID, &sub.Status); err != nil {
			return nil, fmt.Errorf("audience: subscriptions: %w", err)
		}
		sub.Subscribed = sub.Status == Active || sub.Status == Pending
		out = append(out, sub)
	}
	return out, rows.Err()
}

// OptOut is who withdrew, for the consent ledger.
type OptOut struct {
	// Source is the ledger source ("preference_centre", "unsubscribe").
	Source    string
	IP        string
	UserAgent string
	// TextVersion names the page or wording the person answered.
	TextVersion string
}

// OptOutAudiences unsubscribes the address from the given audiences
// (every audience when ids is nil), in one transaction: each of its
// subscribed contacts there (active or pending) becomes unsubscribed, and
// every non-erased one gets a marketing withdrawal in the consent ledger
// (bounced and complained contacts keep their status). It returns the
// audiences that changed and how many subscribed audiences the address
// has left, so the caller can add the suppression when none remains.
func (s *Store) OptOutAudiences(ctx context.Context, email string, ids []int64, o OptOut) (changed []int64, left int, err error) {
	_, key, err := NormalizeEmail(email)
	if err != nil {
		return nil, 0, err
	}
	if o.Source == "" {
		o.Source = "preference_centre"
	}
	if !ledgerWord.MatchString(o.Source) {
		return nil, 0, invalid("invalid_consent", "source %q: want a lower-case word", o.Source)
	}
	if len(o.IP) > 64 {
		o.IP = o.IP[:64]
	}
	if len(o.UserAgent) > 1024 {
		o.UserAgent = o.UserAgent[:1024]
	}
	in, args := "", []any{key}
	if ids != nil {
		if len(ids) == 0 {
			in = " AND 1 = 0"
		} else {
			in = " AND audience_id IN (" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
			for _, id := range ids {
				args = append(args, id)
			}
		}
	}
	now := s.now()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id, audience_id, status FROM contacts WHERE email_key = ? AND status <> 'erased'`+in), args...)
		if err != nil {
			return fmt.Errorf("audience: opt out: %w", err)
		}
		type hit struct {
			id, audience int64
			st           Status
		}
		var hits []hit
		for rows.Next() {
			var h hit
			if err := rows.Scan(&h.id, &h.audience, &h.st); err != nil {
				rows.Close()
				return fmt.Errorf("audience: opt out: %w", err)
			}
			hits = append(hits, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audience: opt out: %w", err)
		}
		for _, h := range hits {
			if _, err := s.exec(ctx, tx, `INSERT INTO consent (contact_id, purpose, action, at, source, ip, user_agent, text_version) VALUES (?, 'marketing', 'withdrawn', ?, ?, ?, ?, ?)`,
				h.id, now, o.Source, o.IP, o.UserAgent, o.TextVersion); err != nil {
				return fmt.Errorf("audience: opt out: %w", err)
			}
			if h.st != Active && h.st != Pending {
				continue
			}
			if _, err := s.exec(ctx, tx, `UPDATE contacts SET status = 'unsubscribed', updated_at = ? WHERE id = ?`, now, h.id); err != nil {
				return fmt.Errorf("audience: opt out: %w", err)
			}
			changed = append(changed, h.audience)
		}
		return tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM contacts WHERE email_key = ? AND status IN ('active', 'pending')`), key).Scan(&left)
	})
	if err != nil {
		return nil, 0, err
	}
	return changed, left, nil
}
