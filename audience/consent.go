package audience

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ConsentAction is a ledger entry's kind.
type ConsentAction string

// Consent actions.
const (
	Granted   ConsentAction = "granted"
	Withdrawn ConsentAction = "withdrawn"
)

// ConsentRecord is one append-only entry of the consent ledger.
type ConsentRecord struct {
	ID        int64         `json:"id"`
	ContactID int64         `json:"contact_id"`
	Purpose   string        `json:"purpose"` // "marketing", "transactional", "audience:NAME", ...
	Action    ConsentAction `json:"action"`
	At        time.Time     `json:"at"`
	// Source is how consent was given or withdrawn: form, import, api,
	// double_opt_in, unsubscribe, complaint, ...
	Source      string `json:"source"`
	IP          string `json:"ip,omitempty"`
	UserAgent   string `json:"user_agent,omitempty"`
	TextVersion string `json:"text_version,omitempty"` // the consent text shown, or its version
}

var ledgerWord = regexp.MustCompile(`^[a-z][a-z0-9_.:-]{0,63}$`)

// RecordConsent appends an entry to a contact's consent ledger. The
// ledger is never updated or deleted (erasure blanks IP and user agent).
func (s *Store) RecordConsent(ctx context.Context, audience, contact int64, r ConsentRecord) (ConsentRecord, error) {
	if !ledgerWord.MatchString(r.Purpose) {
		return r, invalid("invalid_consent", "purpose %q: want a lower-case word like marketing or audience:news", r.Purpose)
	}
	if r.Action != Granted && r.Action != Withdrawn {
		return r, invalid("invalid_consent", "action %q: want granted or withdrawn", r.Action)
	}
	if !ledgerWord.MatchString(r.Source) {
		return r, invalid("invalid_consent", "source %q: want a lower-case word like form, import or api", r.Source)
	}
	if len(r.IP) > 64 || len(r.UserAgent) > 1024 || len(r.TextVersion) > maxText {
		return r, invalid("invalid_consent", "ip, user_agent or text_version too long")
	}
	if r.At.IsZero() {
		r.At = s.opts.Now()
	}
	r.At = r.At.UTC().Truncate(time.Second)
	r.ContactID = contact
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var st Status
		err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM contacts WHERE audience_id = ? AND id = ?`), audience, contact).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("no contact %d in audience %d", contact, audience)
		}
		if err != nil {
			return fmt.Errorf("audience: consent: %w", err)
		}
		if st == Erased {
			return conflict("erased", "contact %d was erased", contact)
		}
		return tx.QueryRowContext(ctx, s.q(`INSERT INTO consent (contact_id, purpose, action, at, source, ip, user_agent, text_version) VALUES (?,?,?,?,?,?,?,?) RETURNING id`),
			contact, r.Purpose, string(r.Action), r.At.Unix(), r.Source, r.IP, r.UserAgent, r.TextVersion).Scan(&r.ID)
	})
	return r, err
}

// Consent returns a contact's ledger, oldest first.
func (s *Store) Consent(ctx context.Context, audience, contact int64) ([]ConsentRecord, error) {
	return s.consent(ctx, s.db, audience, contact)
}

func (s *Store) consent(ctx context.Context, db dbtx, audience, contact int64) ([]ConsentRecord, error) {
	rows, err := db.QueryContext(ctx, s.q(`SELECT l.id, l.contact_id, l.purpose, l.action, l.at, l.source, l.ip, l.user_agent, l.text_version
		FROM consent l JOIN contacts c ON c.id = l.contact_id WHERE c.audience_id = ? AND l.contact_id = ? ORDER BY l.id`), audience, contact)
	if err != nil {
		return nil, fmt.Errorf("audience: consent: %w", err)
	}
	defer rows.Close()
	out := []ConsentRecord{}
	for rows.Next() {
		var r ConsentRecord
		var at int64
		if err := rows.Scan(&r.ID, &r.ContactID, &r.Purpose, &r.Action, &at, &r.Source, &r.IP, &r.UserAgent, &r.TextVersion); err != nil {
			return nil, fmt.Errorf("audience: consent: %w", err)
		}
		r.At = time.Unix(at, 0).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// HasConsent reports whether the latest ledger entry of the contact for
// purpose is a grant.
func (s *Store) HasConsent(ctx context.Context, audience, contact int64, purpose string) (bool, error) {
	var action string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT l.action FROM consent l JOIN contacts c ON c.id = l.contact_id
		WHERE c.audience_id = ? AND l.contact_id = ? AND l.purpose = ? ORDER BY l.id DESC LIMIT 1`), audience, contact, purpose).Scan(&action)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("audience: consent: %w", err)
	}
	return action == string(Granted), nil
}

// Export is everything stored about one contact.
type Export struct {
	Contact Contact         `json:"contact"`
	Consent []ConsentRecord `json:"consent"`
}

// ExportContact returns a contact's data and consent ledger.
func (s *Store) ExportContact(ctx context.Context, audience, contact int64) (Export, error) {
	c, err := s.Contact(ctx, audience, contact)
	if err != nil {
		return Export{}, err
	}
	l, err := s.Consent(ctx, audience, contact)
	return Export{Contact: c, Consent: l}, err
}

// Erase removes a person's data: every contact with the address (in any
// audience) keeps only its id, status "erased" and its consent ledger
// without IP and user agent; the address is replaced by a keyed hash,
// which is also recorded so the address cannot be added again by import
// or API. It returns the number of contacts erased.
func (s *Store) Erase(ctx context.Context, audience, contact int64) (int, error) {
	var n int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var key string
		var st Status
		err := tx.QueryRowContext(ctx, s.q(`SELECT email_key, status FROM contacts WHERE audience_id = ? AND id = ?`), audience, contact).Scan(&key, &st)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("no contact %d in audience %d", contact, audience)
		}
		if err != nil {
			return fmt.Errorf("audience: erase: %w", err)
		}
		if st == Erased {
			return nil
		}
		h := s.erasureHash(key)
		if _, err := s.exec(ctx, tx, `INSERT INTO erased (hash, at) VALUES (?, ?) ON CONFLICT DO NOTHING`, h, s.now()); err != nil {
			return fmt.Errorf("audience: erase: %w", err)
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM contacts WHERE email_key = ?`), key)
		if err != nil {
			return fmt.Errorf("audience: erase: %w", err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("audience: erase: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			// The placeholder address keeps the unique key distinct per contact.
			placeholder := fmt.Sprintf("erased-%d@erased.invalid", id)
			if _, err := s.exec(ctx, tx, `UPDATE contacts SET email = ?, email_key = ?, status = 'erased', name = NULL, phone = NULL, gender = NULL,
				birthday = NULL, age = NULL, time_zone = NULL, locale = NULL, fields = '{}', last_sent = NULL, last_opened = NULL, last_clicked = NULL,
				updated_at = ?`+s.clearSlots()+` WHERE id = ?`, placeholder, "erased:"+h+":"+fmt.Sprint(id), s.now(), id); err != nil {
				return fmt.Errorf("audience: erase: %w", err)
			}
			if _, err := s.exec(ctx, tx, `DELETE FROM contact_tags WHERE contact_id = ?`, id); err != nil {
				return fmt.Errorf("audience: erase: %w", err)
			}
			if _, err := s.exec(ctx, tx, `UPDATE consent SET ip = '', user_agent = '' WHERE contact_id = ?`, id); err != nil {
				return fmt.Errorf("audience: erase: %w", err)
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// IsErased reports whether an address was erased.
func (s *Store) IsErased(ctx context.Context, email string) (bool, error) {
	_, key, err := NormalizeEmail(email)
	if err != nil {
		return false, err
	}
	var n int
	err = s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM erased WHERE hash = ?`), s.erasureHash(key)).Scan(&n)
	return n > 0, err
}

func (s *Store) erasureHash(key string) string {
	m := hmac.New(sha256.New, s.erasure)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}

// loadErasureKey reads the key of erasure hashes, creating it on first
// open. It lives in the database so hashes stay comparable across
// restarts and hosts sharing a PostgreSQL database.
func (s *Store) loadErasureKey(ctx context.Context) error {
	k, err := s.metaSecret(ctx, "erasure_key")
	s.erasure = k
	return err
}
