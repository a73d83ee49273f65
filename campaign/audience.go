package campaign

import (
	"context"
	"fmt"
	"strconv"

	"github.com/petrel-mta/petrel/audience"
)

// AudienceSource reads a campaign's recipients from an audience, filtered
// by a segment expression and tags, minus exclusions (evaluated when each
// page is read, so it is never stale), in one query per page
// (audience.Store.Recipients). A contact that is not active is skipped
// with its status as the reason; with RequireConsent, one whose latest
// ledger entry for ConsentPurpose is not a grant is skipped as
// "no_consent".
type AudienceSource struct {
	Store    *audience.Store
	Audience int64
	Segment  string
	// Tags, when set, keeps only contacts with one of them.
	Tags []string
	// Exclude leaves contacts out (audiences by address, tags, segments).
	Exclude Exclusions
	// RequireConsent skips contacts without a grant for ConsentPurpose
	// ("marketing" when empty): marketing mail needs consent.
	RequireConsent bool
	ConsentPurpose string
	// Keep, when set, limits the send to the contacts it keeps; the
	// others pass (Recipient.Pass).
	Keep func(c audience.Contact) bool
	// excludeSegments are the expressions of Exclude.Segments (resolved
	// by the Service).
	excludeSegments []string
}

// Exclusions are the contacts a campaign leaves out.
type Exclusions struct {
	// Audiences: contacts whose address is in any of these audiences.
	Audiences []int64 `json:"audiences,omitempty"`
	// Tags: contacts with any of these tags.
	Tags []string `json:"tags,omitempty"`
	// Segments: contacts matching any of these saved segments (of the
	// campaign's audience).
	Segments []int64 `json:"segments,omitempty"`
}

func (a AudienceSource) query(after int64, limit int) audience.RecipientQuery {
	q := audience.RecipientQuery{Audience: a.Audience, Segment: a.Segment, Tags: a.Tags, ExcludeAudiences: a.Exclude.Audiences,
		ExcludeTags: a.Exclude.Tags, ExcludeSegments: a.excludeSegments, After: after, Limit: limit}
	if a.RequireConsent {
		q.ConsentPurpose = a.ConsentPurpose
		if q.ConsentPurpose == "" {
			q.ConsentPurpose = "marketing"
		}
	}
	return q
}

// Page implements Source.
func (a AudienceSource) Page(ctx context.Context, after int64, limit int) ([]Recipient, error) {
	cs, err := a.Store.Recipients(ctx, a.query(after, limit))
	if err != nil {
		return nil, err
	}
	out := make([]Recipient, 0, len(cs))
	for _, c := range cs {
		r := Recipient{ID: c.ID, Email: c.Email, Name: c.Name}
		switch {
		case a.Keep != nil && !a.Keep(c.Contact):
			r.Pass = true
		case c.Status != audience.Active:
			r.Skip = string(c.Status)
		case a.RequireConsent && !c.Consented:
			r.Skip = "no_consent"
		default:
			r.Values = contactValues(c.Contact)
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
