package campaign

import (
	"context"
	"fmt"
	"strconv"

	"github.com/petrel-mta/petrel/audience"
)

// AudienceSource reads a campaign's recipients from an audience, filtered
// by a segment expression (evaluated when each page is read, so it is
// never stale). A contact that is not active is skipped with its status
// as the reason; with RequireConsent, one whose latest ledger entry for
// ConsentPurpose is not a grant is skipped as "no_consent".
type AudienceSource struct {
	Store    *audience.Store
	Audience int64
	Segment  string
	// RequireConsent skips contacts without a grant for ConsentPurpose
	// ("marketing" when empty): marketing mail needs consent.
	RequireConsent bool
	ConsentPurpose string
	// Keep, when set, limits the send to the contacts it keeps; the
	// others pass (Recipient.Pass) before any consent lookup.
	Keep func(c audience.Contact) bool
}

// Page implements Source.
func (a AudienceSource) Page(ctx context.Context, after int64, limit int) ([]Recipient, error) {
	cs, _, err := a.Store.ListContacts(ctx, a.Audience, audience.ListOptions{Segment: a.Segment, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	purpose := a.ConsentPurpose
	if purpose == "" {
		purpose = "marketing"
	}
	// The consent of the whole page in one query.
	var consented map[int64]bool
	if a.RequireConsent {
		ids := make([]int64, 0, len(cs))
		for _, c := range cs {
			if c.Status == audience.Active && (a.Keep == nil || a.Keep(c)) {
				ids = append(ids, c.ID)
			}
		}
		if consented, err = a.Store.Consented(ctx, a.Audience, ids, purpose); err != nil {
			return nil, err
		}
	}
	out := make([]Recipient, 0, len(cs))
	for _, c := range cs {
		r := Recipient{ID: c.ID, Email: c.Email, Name: c.Name}
		switch {
		case a.Keep != nil && !a.Keep(c):
			r.Pass = true
		case c.Status != audience.Active:
			r.Skip = string(c.Status)
		case a.RequireConsent && !consented[c.ID]:
			r.Skip = "no_consent"
		default:
			r.Values = contactValues(c)
		}
		out = append(out, r)
	}
	return out, nil
}

// contactValues are the placeholders a contact fills: email, name (and
// first_name, its first word), the default fields and every custom field.
func contactValues(c audience.Contact) Map {
	m := Map{"email": c.Email, "name": c.Name, "phone": c.Phone, "gender": c.Gender, "birthday": c.Birthday,
		"time_zone": c.TimeZone, "locale": c.Locale}
	if c.Age != nil {
		m["age"] = strconv.Itoa(*c.Age)
	}
	first := c.Name
	for i, r := range c.Name {
		if r == ' ' {
			first = c.Name[:i]
			break
		}
	}
	m["first_name"] = first
	for k, v := range c.Fields {
		if v != nil {
			m[k] = fmt.Sprint(v)
		}
	}
	return m
}

// ContactValues are the placeholders a contact fills (email, name,
// first_name, the default fields and every custom field), for other
// senders of templates (automation flows).
func ContactValues(c audience.Contact) Map { return contactValues(c) }
