package campaign

import (
	"fmt"
	"strings"
	"time"
)

// Schedule is when a campaign starts: SendAt is a wall-clock time in the
// IANA time zone TimeZone ("2026-12-24T09:00", zone "Europe/Oslo"; UTC
// when the zone is empty), or an RFC 3339 instant with its offset
// ("2026-12-24T08:00:00Z"), which needs no zone.
//
// Daylight saving: a wall time that does not exist (in a spring-forward
// gap, e.g. 02:30 on the last Sunday of March in Europe/Oslo) moves
// forward by the gap (03:30 summer time); a wall time that exists twice
// (in the autumn overlap) means its first occurrence (summer time).
type Schedule struct {
	SendAt   string `json:"send_at"`
	TimeZone string `json:"time_zone,omitempty"`
	// ContactTimeZone sends at SendAt's wall time in each contact's own
	// time zone (TimeZone for contacts without a valid one): tz.go.
	ContactTimeZone bool `json:"contact_time_zone,omitempty"`
}

// scheduleError is a schedule that cannot be used (HTTP 400
// invalid_schedule).
type scheduleError struct{ msg string }

func (e *scheduleError) Error() string { return "campaign: schedule: " + e.msg }

// wallLayouts are the accepted local wall-clock forms of SendAt.
var wallLayouts = []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"}

// resolve returns the instant sc names; it must not be more than a
// minute before now.
func (sc Schedule) resolve(now time.Time) (time.Time, error) {
	s := strings.TrimSpace(sc.SendAt)
	if s == "" {
		return time.Time{}, &scheduleError{"send_at is required"}
	}
	loc := time.UTC
	if sc.TimeZone != "" {
		// LoadLocation also accepts "Local" and paths; only IANA names.
		if sc.TimeZone == "Local" || strings.HasPrefix(sc.TimeZone, "/") || strings.Contains(sc.TimeZone, "..") {
			return time.Time{}, &scheduleError{fmt.Sprintf("unknown time zone %q", sc.TimeZone)}
		}
		l, err := time.LoadLocation(sc.TimeZone)
		if err != nil {
			return time.Time{}, &scheduleError{fmt.Sprintf("unknown time zone %q", sc.TimeZone)}
		}
		loc = l
	}
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		var wall time.Time
		for _, layout := range wallLayouts {
			if wall, err = time.Parse(layout, s); err == nil {
				break
			}
		}
		if err != nil {
			return time.Time{}, &scheduleError{fmt.Sprintf("send_at %q is neither YYYY-MM-DDTHH:MM[:SS] nor RFC 3339", sc.SendAt)}
		}
		at = wallIn(wall, loc)
	}
	if at.Before(now.Add(-time.Minute)) {
		return time.Time{}, &scheduleError{fmt.Sprintf("send_at %s is in the past", at.UTC().Format(time.RFC3339))}
	}
	if sc.ContactTimeZone {
		wall, err := sc.wallClock()
		if err != nil {
			return time.Time{}, err
		}
		// The send starts when the first zone (UTC+14) reaches the wall
		// time; each pass then waits for its own instant.
		first := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, time.UTC).Add(-14 * time.Hour)
		if first.Before(at) {
			at = first
		}
		if at.Before(now) {
			at = now
		}
	}
	return at.UTC(), nil
}

// wallIn is the instant of wall-clock time wall (its fields, read as
// UTC) in loc: a time in a DST gap moves forward by the gap, a time in
// an overlap is its first occurrence.
func wallIn(wall time.Time, loc *time.Location) time.Time {
	y, mo, d := wall.Date()
	h, mi, sec := wall.Clock()
	// time.Date resolves gaps and overlaps in an unspecified way; decide
	// explicitly from the offsets in force one day apart.
	for _, off := range offsetsAround(wall, loc) {
		t := time.Date(y, mo, d, h, mi, sec, 0, time.FixedZone("", off)).In(loc)
		if t.Hour() == h && t.Minute() == mi && t.Second() == sec && t.Day() == d && t.Month() == mo && t.Year() == y {
			return t // exists with this offset; the first offset is the earlier one
		}
	}
	// In a gap: the wall time read with the offset before the gap is the
	// same time of day after it, shifted by the gap.
	_, before := time.Date(y, mo, d, 0, 0, 0, 0, loc).Add(-12 * time.Hour).Zone()
	return time.Date(y, mo, d, h, mi, sec, 0, time.FixedZone("", before)).In(loc)
}

// offsetsAround returns the distinct UTC offsets loc uses within a day
// of wall, the larger (the summer-time one, earlier instant) first.
func offsetsAround(wall time.Time, loc *time.Location) []int {
	approx := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), 0, 0, time.UTC)
	var offs []int
	for _, dt := range []time.Duration{-24 * time.Hour, 0, 24 * time.Hour} {
		_, off := approx.Add(dt).In(loc).Zone()
		seen := false
		for _, o := range offs {
			seen = seen || o == off
		}
		if !seen {
			offs = append(offs, off)
		}
	}
	// Larger offset first: for the same wall time it is the earlier
	// instant.
	for i := 1; i < len(offs); i++ {
		for j := i; j > 0 && offs[j] > offs[j-1]; j-- {
			offs[j], offs[j-1] = offs[j-1], offs[j]
		}
	}
	return offs
}
