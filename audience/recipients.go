package audience

// Campaign recipients: a page of an audience's contacts filtered by a
// segment and tags, minus exclusions (contacts whose address is in other
// audiences, contacts with excluded tags, contacts matching excluded
// segments), with their consent, in id order for a durable cursor. The
// filters and exclusions are one SQL query per page (indexed: email_key,
// contact_tags' primary key, consent_contact); only a segment that has no
// SQL translation is evaluated in Go.

import (
	"context"
	"fmt"
	"strings"
)

// RecipientQuery selects a page of a campaign's recipients.
type RecipientQuery struct {
	Audience int64
	// Segment is a CEL expression the contacts must match ("" = all).
	Segment string
	// Tags, when set, keeps only contacts with at least one of them.
	Tags []string
	// ExcludeAudiences leaves out contacts whose address is in any of
	// these audiences.
	ExcludeAudiences []int64
	// ExcludeTags leaves out contacts with any of these tags.
	ExcludeTags []string
	// ExcludeSegments leaves out contacts matching any of these CEL
	// expressions (saved segments' expressions); each must translate to
	// SQL (CheckRecipients says so).
	ExcludeSegments []string
	// ConsentPurpose, when set, fills Recipient.Consented.
	ConsentPurpose string
	// After is the cursor (the last id of the previous page); Limit the
	// page size (at most 1000).
	After int64
	Limit int
}

// Recipient is a contact selected by a RecipientQuery.
type Recipient struct {
	Contact
	// Consented is whether the contact's latest consent ledger entry for
	// the query's purpose is a grant.
	Consented bool
}

// CheckRecipients reports whether q can be paged: its audiences exist,
// its expressions compile and every excluded segment translates to SQL.
func (s *Store) CheckRecipients(ctx context.Context, q RecipientQuery) error {
	_, _, _, err := s.recipientWhere(ctx, q)
	return err
}

// recipientWhere is q's SQL condition (after the audience and cursor
// conditions) and its arguments, and the segment to evaluate in Go (nil
// when the segment is in the SQL).
func (s *Store) recipientWhere(ctx context.Context, q RecipientQuery) (string, []any, *segQuery, error) {
	a, err := s.Audience(ctx, q.Audience)
	if err != nil {
		return "", nil, nil, err
	}
	var where []string
	var args []any
	var goSeg *segQuery
	if q.Segment != "" {
		sq, err := s.compile(&a, q.Segment)
		if err != nil {
			return "", nil, nil, err
		}
		if sq.where == "" {
			goSeg = sq
		} else {
			where = append(where, "("+sq.where+")")
			args = append(args, sq.args...)
		}
	}
	in := func(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }
	if len(q.Tags) > 0 {
		where = append(where, `EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag IN (`+in(len(q.Tags))+`))`)
		for _, t := range q.Tags {
			args = append(args, t)
		}
	}
	if len(q.ExcludeAudiences) > 0 {
		for _, id := range q.ExcludeAudiences {
			if _, err := s.Audience(ctx, id); err != nil {
				return "", nil, nil, err
			}
			args = append(args, id)
		}
		where = append(where, `NOT EXISTS (SELECT 1 FROM contacts x WHERE x.email_key = c.email_key AND x.audience_id IN (`+in(len(q.ExcludeAudiences))+`))`)
	}
	if len(q.ExcludeTags) > 0 {
		where = append(where, `NOT EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag IN (`+in(len(q.ExcludeTags))+`))`)
		for _, t := range q.ExcludeTags {
			args = append(args, t)
		}
	}
	for _, expr := range q.ExcludeSegments {
		sq, err := s.compile(&a, expr)
		if err != nil {
			return "", nil, nil, err
		}
		if sq.where == "" {
			return "", nil, nil, invalid("invalid_exclusion", "segment %q cannot be excluded: it has no SQL translation", expr)
		}
		// A NULL condition (a missing field) does not match: not excluded.
		where = append(where, "NOT COALESCE(("+sq.where+"), FALSE)")
		args = append(args, sq.args...)
	}
	return strings.Join(where, " AND "), args, goSeg, nil
}

// Recipients returns the page of q's recipients after q.After, in id
// order (an empty page: there are no more).
func (s *Store) Recipients(ctx context.Context, q RecipientQuery) ([]Recipient, error) {
	if q.Limit <= 0 {
		q.Limit = 500
	}
	q.Limit = min(q.Limit, 1000)
	where, args, goSeg, err := s.recipientWhere(ctx, q)
	if err != nil {
		return nil, err
	}
	a, err := s.Audience(ctx, q.Audience)
	if err != nil {
		return nil, err
	}
	cond := `c.audience_id = ? AND c.id > ?`
	if where != "" {
		cond += " AND " + where
	}
	var out []Recipient
	after := q.After
	for len(out) < q.Limit {
		cs, err := s.contacts(ctx, s.db, q.Audience, contactSelect+` WHERE `+cond+` ORDER BY c.id LIMIT ?`,
			append(append([]any{q.Audience, after}, args...), q.Limit)...)
		if err != nil {
			return nil, err
		}
		for i := range cs {
			if goSeg != nil {
				ok, err := goSeg.match(&cs[i], &a)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
			if len(out) < q.Limit {
				out = append(out, Recipient{Contact: cs[i]})
			}
		}
		if goSeg == nil || len(cs) < q.Limit {
			break
		}
		after = cs[len(cs)-1].ID
	}
	if q.ConsentPurpose != "" && len(out) > 0 {
		if err := s.fillConsent(ctx, out, q.ConsentPurpose); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fillConsent sets Consented of rs from each contact's latest ledger
// entry for purpose (one indexed lookup per contact, one query).
func (s *Store) fillConsent(ctx context.Context, rs []Recipient, purpose string) error {
	byID := make(map[int64]int, len(rs))
	args := make([]any, 0, len(rs)+1)
	args = append(args, purpose)
	for i, r := range rs {
		byID[r.ID] = i
		args = append(args, r.ID)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT c.id, (SELECT l.action FROM consent l WHERE l.contact_id = c.id AND l.purpose = ? ORDER BY l.id DESC LIMIT 1)
		FROM contacts c WHERE c.id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(rs)), ",")+`)`), args...)
	if err != nil {
		return fmt.Errorf("audience: recipients' consent: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var action *string
		if err := rows.Scan(&id, &action); err != nil {
			return fmt.Errorf("audience: recipients' consent: %w", err)
		}
		if i, ok := byID[id]; ok {
			rs[i].Consented = action != nil && *action == string(Granted)
		}
	}
	return rows.Err()
}
