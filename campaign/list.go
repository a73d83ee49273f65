package campaign

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Summary is one campaign in a list: what the dashboard shows without
// the template bodies.
type Summary struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Subject  string `json:"subject"`
	Audience int64  `json:"audience"`
	Segment  string `json:"segment,omitempty"`
	Stream   string `json:"stream"`
	// Template and TemplateVersion name the pinned template version
	// (empty for inline content).
	Template        string    `json:"template,omitempty"`
	TemplateVersion int64     `json:"template_version,omitempty"`
	Progress        State     `json:"progress"`
	Created         time.Time `json:"created"`
	Times
}

// ListOptions selects a page of campaigns, newest first.
type ListOptions struct {
	// Status keeps only campaigns in this status ("" = all).
	Status string
	// After is the Next of the previous page ("" = from the newest).
	After string
	// Limit is the page size (default 50, at most 500).
	Limit int
}

// List returns a page of campaigns, newest first, and the cursor of the
// next page ("" on the last).
func (s *Service) List(ctx context.Context, o ListOptions) ([]Summary, string, error) {
	limit := o.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	var where []string
	var args []any
	add := func(cond string, vals ...any) {
		for range vals {
			cond = strings.Replace(cond, "?", s.arg(len(args)+1), 1)
			args = append(args, vals[0])
			vals = vals[1:]
		}
		where = append(where, cond)
	}
	if o.Status != "" {
		if !validStatus(o.Status) {
			return nil, "", &invalidError{fmt.Errorf("campaign: unknown status %q", o.Status)}
		}
		add("c.status = ?", o.Status)
	}
	if o.After != "" {
		sec, id, ok := strings.Cut(o.After, ".")
		created, err := strconv.ParseInt(sec, 10, 64)
		if !ok || err != nil || !campaignID.MatchString(id) {
			return nil, "", &invalidError{fmt.Errorf("campaign: bad cursor %q", o.After)}
		}
		add("(c.created < ? OR (c.created = ? AND c.id < ?))", created, created, id)
	}
	q := "SELECT c.id, c.spec, c.status, c.error, c.created, c.send_at, c.started_at, c.finished_at, c.updated_at, COALESCE(p.state, '') FROM campaigns c LEFT JOIN campaign_progress p ON p.campaign = c.id"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY c.created DESC, c.id DESC LIMIT %d", limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("campaign: list: %w", err)
	}
	defer rows.Close()
	out := []Summary{}
	var phased []int // A/B and per-contact time zone campaigns: progress in phases
	var specs []Spec
	for rows.Next() {
		var raw, prog string
		var created, sendAt, started, finished, updated int64
		var sm Summary
		if err := rows.Scan(&sm.ID, &raw, &sm.Status, &sm.Error, &created, &sendAt, &started, &finished, &updated, &prog); err != nil {
			return nil, "", fmt.Errorf("campaign: list: %w", err)
		}
		var sp Spec
		if err := json.Unmarshal([]byte(raw), &sp); err != nil {
			return nil, "", fmt.Errorf("campaign: corrupt spec of %s: %w", sm.ID, err)
		}
		if prog != "" {
			if err := json.Unmarshal([]byte(prog), &sm.Progress); err != nil {
				return nil, "", fmt.Errorf("campaign: corrupt progress of %s: %w", sm.ID, err)
			}
		}
		if sp.AB != nil || (sp.Schedule != nil && sp.Schedule.ContactTimeZone) {
			phased = append(phased, len(out))
		}
		sm.Subject, sm.Audience, sm.Segment, sm.Stream = sp.Subject, sp.Audience, sp.Segment, sp.stream()
		sm.Template, sm.TemplateVersion = sp.Template, sp.TemplateVersion
		specs = append(specs, sp)
		sm.Created = time.Unix(created, 0).UTC()
		sm.Times = timesOf(sendAt, started, finished, updated)
		out = append(out, sm)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("campaign: list: %w", err)
	}
	rows.Close()
	for _, i := range phased {
		st, _, err := s.progressOf(ctx, specs[i])
		if err != nil {
			return nil, "", err
		}
		out[i].Progress = st
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = strconv.FormatInt(last.Created.Unix(), 10) + "." + last.ID
	}
	return out, next, nil
}
