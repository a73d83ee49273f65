package campaign

// Sending at the same local time in each contact's own time zone
// (Schedule.ContactTimeZone). When the send starts, the audience's
// distinct time zones are grouped by the instant the wall time falls on
// in each (contacts without a valid zone use Schedule.TimeZone), and the
// plan — one pass per instant, earliest first — is stored durably
// (campaign_progress <id>#tzplan), so a restart keeps it. Each pass is an
// engine run over the audience with its own cursor (<id>#tz<n>) that
// keeps only its zones' contacts; it starts at its instant (at once when
// that has passed). A contact whose zone is not in the plan (changed
// since) goes with the fallback pass. The idempotency key is per
// (campaign, contact) in every pass, so a contact that moves between
// zones mid-send is still mailed at most once.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/audience"
)

// tzPass is one pass of a per-contact-time-zone send.
type tzPass struct {
	At       int64    `json:"at"`
	Zones    []string `json:"zones,omitempty"`
	Fallback bool     `json:"fallback,omitempty"`
}

// loadZone loads an IANA zone name ("" or invalid: false).
func loadZone(name string) (*time.Location, bool) {
	if name == "" || name == "Local" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	return loc, err == nil
}

// wallClock parses sc.SendAt as a wall-clock time (no offset).
func (sc Schedule) wallClock() (time.Time, error) {
	s := strings.TrimSpace(sc.SendAt)
	for _, layout := range wallLayouts {
		if w, err := time.Parse(layout, s); err == nil {
			return w, nil
		}
	}
	return time.Time{}, &scheduleError{fmt.Sprintf("send_at %q: a per-contact time zone send needs a wall time YYYY-MM-DDTHH:MM[:SS]", sc.SendAt)}
}

// tzPlan groups zones by the instant wall falls on in each; fallback is
// the zone of contacts without a valid one.
func tzPlan(wall time.Time, fallback *time.Location, zones []string) []tzPass {
	byAt := map[int64]*tzPass{}
	get := func(at int64) *tzPass {
		if byAt[at] == nil {
			byAt[at] = &tzPass{At: at}
		}
		return byAt[at]
	}
	for _, z := range zones {
		if loc, ok := loadZone(z); ok {
			p := get(wallIn(wall, loc).Unix())
			p.Zones = append(p.Zones, z)
		}
	}
	get(wallIn(wall, fallback).Unix()).Fallback = true
	var plan []tzPass
	for _, p := range byAt {
		plan = append(plan, *p)
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].At < plan[j].At })
	return plan
}

// loadTZPlan returns id's stored plan (nil before the send started).
func (s *Service) loadTZPlan(ctx context.Context, id string) ([]tzPass, error) {
	raw, err := s.prog.LoadRaw(ctx, id+"#tzplan")
	if err != nil || raw == "" {
		return nil, err
	}
	var plan []tzPass
	if err := json.Unmarshal([]byte(raw), &plan); err != nil {
		return nil, fmt.Errorf("campaign: corrupt time-zone plan of %s: %w", id, err)
	}
	return plan, nil
}

func tzKey(id string, pass int) string { return fmt.Sprintf("%s#tz%d", id, pass) }

// runTZ runs the passes of a per-contact-time-zone send.
func (s *Service) runTZ(ctx context.Context, sp Spec, send Send, src AudienceSource) (State, error) {
	sc := sp.Schedule
	plan, err := s.loadTZPlan(ctx, sp.ID)
	if err != nil {
		return State{}, err
	}
	if plan == nil {
		wall, err := sc.wallClock()
		if err != nil {
			return State{}, err
		}
		fallback := time.UTC
		if loc, ok := loadZone(sc.TimeZone); ok {
			fallback = loc
		}
		zones, err := s.aud.TimeZones(ctx, sp.Audience)
		if err != nil {
			return State{}, err
		}
		plan = tzPlan(wall, fallback, zones)
		raw, _ := json.Marshal(plan)
		if err := s.prog.SaveRaw(ctx, sp.ID+"#tzplan", string(raw)); err != nil {
			return State{}, err
		}
		s.log.Info("per-contact time zone send planned", "campaign", sp.ID, "passes", len(plan))
	}
	passOf := map[string]int{}
	fallbackPass := 0
	for i, p := range plan {
		for _, z := range p.Zones {
			passOf[z] = i
		}
		if p.Fallback {
			fallbackPass = i
		}
	}
	var st State
	for i, p := range plan {
		if wait := time.Until(time.Unix(p.At, 0)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return st, ctx.Err()
			case <-send.Stop:
				t.Stop()
				return st, ErrStopped
			case <-t.C:
			}
		}
		pass := i
		psrc := src
		psrc.Keep = func(c audience.Contact) bool {
			k, ok := passOf[c.TimeZone]
			if !ok {
				k = fallbackPass
			}
			return k == pass
		}
		ps := send
		ps.ProgressKey = tzKey(sp.ID, i)
		if st, err = s.engine.Run(ctx, ps, psrc); err != nil {
			return st, err
		}
	}
	return st, nil
}
