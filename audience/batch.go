package audience

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// ContactsByID returns the contacts of an audience with the given ids
// (missing ids are left out), in one query per 1,000 ids: for readers
// that handle contacts a page at a time (the flow runner).
func (s *Store) ContactsByID(ctx context.Context, audience int64, ids []int64) ([]Contact, error) {
	var out []Contact
	for chunk := range slices.Chunk(ids, 1000) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, audience)
		for _, id := range chunk {
			args = append(args, id)
		}
		cs, err := s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// ContactIDs returns, per audience, the id of the contact with the
// address (only audiences that have it): in the given audiences, or in
// every audience when none is given. One indexed query, for hot paths
// (custom events) that need only the ids.
func (s *Store) ContactIDs(ctx context.Context, email string, audiences ...int64) (map[int64]int64, error) {
	_, key, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	q := `SELECT audience_id, id FROM contacts WHERE email_key = ? AND audience_id IN (SELECT id FROM audiences)`
	args := []any{key}
	if len(audiences) > 0 {
		q = `SELECT audience_id, id FROM contacts WHERE email_key = ? AND audience_id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(audiences)), ",") + `)`
		for _, a := range audiences {
			args = append(args, a)
		}
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("audience: contact ids: %w", err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var a, id int64
		if err := rows.Scan(&a, &id); err != nil {
			return nil, fmt.Errorf("audience: contact ids: %w", err)
		}
		out[a] = id
	}
	return out, rows.Err()
}

// Consented returns which of the contacts' latest ledger entry for
// purpose is a grant (HasConsent for many contacts, one query per 1,000).
func (s *Store) Consented(ctx context.Context, audience int64, ids []int64, purpose string) (map[int64]bool, error) {
	out := make(map[int64]bool, len(ids))
	for chunk := range slices.Chunk(ids, 1000) {
		in := strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")
		args := []any{audience, purpose}
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT l.contact_id, l.action FROM consent l JOIN contacts c ON c.id = l.contact_id AND c.audience_id = ?
			WHERE l.id IN (SELECT MAX(id) FROM consent WHERE purpose = ? AND contact_id IN (`+in+`) GROUP BY contact_id)`), args...)
		if err != nil {
			return nil, fmt.Errorf("audience: consent: %w", err)
		}
		for rows.Next() {
			var id int64
			var action string
			if err := rows.Scan(&id, &action); err != nil {
				rows.Close()
				return nil, fmt.Errorf("audience: consent: %w", err)
			}
			out[id] = action == string(Granted)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("audience: consent: %w", err)
		}
	}
	return out, nil
}
