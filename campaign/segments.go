package campaign

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// CampaignsOfSegment returns the ids of the campaigns sent (or being
// sent) to segment (a CEL expression, compared without surrounding
// spaces; "" is the whole audience) of audience, for the stats by
// segment.
func (s *Service) CampaignsOfSegment(ctx context.Context, audience int64, segment string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, spec FROM campaigns ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("campaign: campaigns of segment: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, spec string
		if err := rows.Scan(&id, &spec); err != nil {
			return nil, fmt.Errorf("campaign: campaigns of segment: %w", err)
		}
		var sp Spec
		if err := json.Unmarshal([]byte(spec), &sp); err != nil {
			return nil, fmt.Errorf("campaign: campaign %s: %w", id, err)
		}
		if sp.Audience == audience && strings.TrimSpace(sp.Segment) == strings.TrimSpace(segment) {
			out = append(out, id)
		}
	}
	return out, rows.Err()
}
