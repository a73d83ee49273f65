package flow

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Flow is one version of an automation flow.
type Flow struct {
	ID   string `json:"id" toml:"id"`
	Name string `json:"name,omitempty" toml:"name"`
	// Audience is the audience whose contacts go through the flow;
	// AudienceName names it instead (resolved when the flow is saved).
	Audience     int64   `json:"audience,omitempty" toml:"audience"`
	AudienceName string  `json:"audience_name,omitempty" toml:"audience_name"`
	Trigger      Trigger `json:"trigger" toml:"trigger"`
	Steps        []Step  `json:"steps" toml:"steps"`
	// Goal is an event name that ends a contact's run early, counted as
	// a conversion.
	Goal       string      `json:"goal,omitempty" toml:"goal"`
	Reentry    Reentry     `json:"reentry" toml:"reentry"`
	QuietHours *QuietHours `json:"quiet_hours,omitempty" toml:"quiet_hours"`
	// TimeZone is used for contacts without a time zone (default UTC).
	TimeZone string `json:"time_zone,omitempty" toml:"time_zone"`
	From     string `json:"from" toml:"from"`
	FromName string `json:"from_name,omitempty" toml:"from_name"`
	ReplyTo  string `json:"reply_to,omitempty" toml:"reply_to"`
	// Stream is "marketing" when empty.
	Stream string `json:"stream,omitempty" toml:"stream"`
	// RequireConsent (default true on the marketing stream) sends only to
	// contacts with a marketing grant.
	RequireConsent *bool `json:"require_consent,omitempty" toml:"require_consent"`
	// Paused flows take no new contacts; runs in progress continue.
	Paused  bool      `json:"paused,omitempty" toml:"paused"`
	Version int64     `json:"version,omitempty" toml:"-"`
	Created time.Time `json:"created,omitzero" toml:"-"`
}

// Trigger types.
const (
	TriggerEvent      = "event"       // a custom event named Event
	TriggerTagAdded   = "tag_added"   // Tag was added to a contact
	TriggerTagRemoved = "tag_removed" // Tag was removed
	TriggerJoined     = "joined"      // a contact joined the audience (after double opt-in)
	TriggerDate       = "date"        // the contact's date Field (+OffsetDays) is today, at At local time
	TriggerOpened     = "opened"      // the contact opened Campaign ("" any)
	TriggerClicked    = "clicked"     // the contact clicked in Campaign ("" any)
	TriggerNotOpened  = "not_opened"  // the contact opened nothing for Days days
)

// Trigger is what puts a contact into a flow.
type Trigger struct {
	Type  string `json:"type" toml:"type"`
	Event string `json:"event,omitempty" toml:"event"`
	Tag   string `json:"tag,omitempty" toml:"tag"`
	// Field is a date field ("birthday" or a custom date field).
	Field string `json:"field,omitempty" toml:"field"`
	// OffsetDays triggers that many days after the date (negative:
	// before, e.g. -7 for "a week before renewal").
	OffsetDays int `json:"offset_days,omitempty" toml:"offset_days"`
	// At is the local time of day a date trigger fires ("09:00" default).
	At       string `json:"at,omitempty" toml:"at"`
	Campaign string `json:"campaign,omitempty" toml:"campaign"`
	Days     int    `json:"days,omitempty" toml:"days"`
}

// Re-entry policies.
const (
	ReentryOnce  = "once"       // a contact goes through the flow once, ever (default)
	ReentryEvery = "every_time" // every trigger, unless the contact is in the flow already
	ReentryDays  = "after_days" // again once Days days passed since it last entered
)

// Reentry says whether a contact may enter a flow again.
type Reentry struct {
	Policy string `json:"policy,omitempty" toml:"policy"`
	Days   int    `json:"days,omitempty" toml:"days"`
}

// QuietHours are local times (contact's time zone) when a flow does not
// send: a send step due then waits until End.
type QuietHours struct {
	Start string `json:"start" toml:"start"` // "21:00"
	End   string `json:"end" toml:"end"`     // "08:00"
}

// Step types.
const (
	StepWait      = "wait"
	StepSend      = "send"
	StepCondition = "condition"
	StepTag       = "tag"
	StepUntag     = "untag"
	StepField     = "update_field"
	StepWebhook   = "webhook"
	StepExit      = "exit"
)

// Step is one step of a flow. After a step the run goes to Next, or to
// the following step when Next is empty; after the last, it completes.
type Step struct {
	ID   string `json:"id" toml:"id"`
	Type string `json:"type" toml:"type"`
	// wait: Duration, or Until a local time of day ("09:00"), or until
	// Event happens, for at most Timeout; then OnEvent or OnTimeout.
	Duration  Duration `json:"duration,omitempty" toml:"duration"`
	Until     string   `json:"until,omitempty" toml:"until"`
	Event     string   `json:"event,omitempty" toml:"event"`
	Timeout   Duration `json:"timeout,omitempty" toml:"timeout"`
	OnEvent   string   `json:"on_event,omitempty" toml:"on_event"`
	OnTimeout string   `json:"on_timeout,omitempty" toml:"on_timeout"`
	// send: a stored template's call name; its version is pinned when the
	// flow is saved (TemplateVersion). %event.NAME% is the triggering
	// event's property NAME.
	Template        string `json:"template,omitempty" toml:"template"`
	TemplateVersion int64  `json:"template_version,omitempty" toml:"-"`
	// condition: If holds → Then, else → Else (empty: the next step).
	If   *Condition `json:"if,omitempty" toml:"if"`
	Then string     `json:"then,omitempty" toml:"then"`
	Else string     `json:"else,omitempty" toml:"else"`
	// tag, untag
	Tag string `json:"tag,omitempty" toml:"tag"`
	// update_field
	Field string `json:"field,omitempty" toml:"field"`
	Value any    `json:"value,omitempty" toml:"value"`
	// webhook: POSTs the run as JSON.
	URL  string `json:"url,omitempty" toml:"url"`
	Next string `json:"next,omitempty" toml:"next"`
}

// Condition is a test on the contact; every set part must hold.
type Condition struct {
	// Segment is a segment expression (CEL, as audience segments) the
	// contact must match; SavedSegment names a saved segment instead.
	Segment      string `json:"segment,omitempty" toml:"segment"`
	SavedSegment string `json:"saved_segment,omitempty" toml:"saved_segment"`
	// HasTag / NotTag test a tag.
	HasTag string `json:"has_tag,omitempty" toml:"has_tag"`
	NotTag string `json:"not_tag,omitempty" toml:"not_tag"`
	// Opened / Clicked: the contact opened (clicked in) that campaign
	// ("flow:<id>" for a flow's messages; "*" any) within Within (0: ever).
	Opened  string   `json:"opened,omitempty" toml:"opened"`
	Clicked string   `json:"clicked,omitempty" toml:"clicked"`
	Within  Duration `json:"within,omitempty" toml:"within"`
}

// Duration is a time.Duration written as "90m", "24h" or "3d".
type Duration time.Duration

// ParseDuration accepts Go durations and a "d" (24 h) suffix.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseFloat(n, 64)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("duration %q", s)
		}
		return Duration(d * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q", s)
	}
	return Duration(d), nil
}

func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = v
	return err
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "24h", "3d" (or seconds as a number).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: %s", b)
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	return d.UnmarshalText([]byte(s))
}

// ValidationError is a flow that cannot be saved (HTTP 400); Step names
// the step at fault ("" for the flow).
type ValidationError struct {
	Step string
	Msg  string
}

func (e *ValidationError) Error() string {
	if e.Step != "" {
		return "flow: step " + e.Step + ": " + e.Msg
	}
	return "flow: " + e.Msg
}

func invalid(step, format string, args ...any) error {
	return &ValidationError{Step: step, Msg: fmt.Sprintf(format, args...)}
}

var (
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	clockPattern = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// ErrCycle is wrapped by the ValidationError of a flow whose steps can
// loop.
var ErrCycle = errors.New("the steps form a cycle")

// parseClock returns minutes since midnight of "HH:MM".
func parseClock(s string) (int, bool) {
	if !clockPattern.MatchString(s) {
		return 0, false
	}
	h, _ := strconv.Atoi(s[:2])
	m, _ := strconv.Atoi(s[3:])
	return h*60 + m, true
}

// checkShape validates what needs no database: ids, types, step
// references and the absence of cycles.
func (f *Flow) checkShape() error {
	if !idPattern.MatchString(f.ID) {
		return invalid("", "id %q must be 1-64 of a-z, 0-9, _ and -", f.ID)
	}
	tr := f.Trigger
	switch tr.Type {
	case TriggerEvent:
		if !namePattern.MatchString(tr.Event) {
			return invalid("", "trigger: event name %q", tr.Event)
		}
	case TriggerTagAdded, TriggerTagRemoved:
		if tr.Tag == "" {
			return invalid("", "trigger %s needs a tag", tr.Type)
		}
	case TriggerJoined, TriggerOpened, TriggerClicked:
	case TriggerDate:
		if tr.Field == "" {
			return invalid("", "trigger date needs a field")
		}
		if tr.At != "" {
			if _, ok := parseClock(tr.At); !ok {
				return invalid("", "trigger at %q must be HH:MM", tr.At)
			}
		}
	case TriggerNotOpened:
		if tr.Days <= 0 {
			return invalid("", "trigger not_opened needs days > 0")
		}
	default:
		return invalid("", "trigger type %q (want event, tag_added, tag_removed, joined, date, opened, clicked or not_opened)", tr.Type)
	}
	if f.Goal != "" && !namePattern.MatchString(f.Goal) {
		return invalid("", "goal event name %q", f.Goal)
	}
	switch f.Reentry.Policy {
	case "":
		f.Reentry.Policy = ReentryOnce
	case ReentryOnce, ReentryEvery:
	case ReentryDays:
		if f.Reentry.Days <= 0 {
			return invalid("", "reentry after_days needs days > 0")
		}
	default:
		return invalid("", "reentry policy %q (want once, every_time or after_days)", f.Reentry.Policy)
	}
	if q := f.QuietHours; q != nil {
		_, ok1 := parseClock(q.Start)
		_, ok2 := parseClock(q.End)
		if !ok1 || !ok2 || q.Start == q.End {
			return invalid("", "quiet_hours start and end must be different HH:MM times")
		}
	}
	if f.TimeZone != "" {
		if _, err := time.LoadLocation(f.TimeZone); err != nil {
			return invalid("", "time_zone %q: %v", f.TimeZone, err)
		}
	}
	if len(f.Steps) == 0 {
		return invalid("", "a flow needs at least one step")
	}
	if len(f.Steps) > 200 {
		return invalid("", "at most 200 steps")
	}
	index := map[string]int{}
	for i, s := range f.Steps {
		if !idPattern.MatchString(s.ID) {
			return invalid(s.ID, "step id %q must be 1-64 of a-z, 0-9, _ and -", s.ID)
		}
		if _, dup := index[s.ID]; dup {
			return invalid(s.ID, "duplicate step id")
		}
		index[s.ID] = i
	}
	for i := range f.Steps {
		if err := f.Steps[i].checkShape(); err != nil {
			return err
		}
		for _, ref := range f.Steps[i].refs() {
			if _, ok := index[ref]; !ok {
				return invalid(f.Steps[i].ID, "refers to unknown step %q", ref)
			}
		}
	}
	return f.checkAcyclic(index)
}

func (s *Step) refs() []string {
	var out []string
	for _, r := range []string{s.Next, s.Then, s.Else, s.OnEvent, s.OnTimeout} {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

func (s *Step) checkShape() error {
	switch s.Type {
	case StepWait:
		n := 0
		if s.Duration > 0 {
			n++
		}
		if s.Until != "" {
			if _, ok := parseClock(s.Until); !ok {
				return invalid(s.ID, "until %q must be HH:MM", s.Until)
			}
			n++
		}
		if s.Event != "" {
			if !namePattern.MatchString(s.Event) {
				return invalid(s.ID, "event name %q", s.Event)
			}
			if s.Timeout <= 0 {
				return invalid(s.ID, "waiting for an event needs a timeout")
			}
			n++
		}
		if n != 1 {
			return invalid(s.ID, "a wait needs exactly one of duration, until or event")
		}
		if s.Event == "" && (s.OnEvent != "" || s.OnTimeout != "") {
			return invalid(s.ID, "on_event/on_timeout only apply to waiting for an event")
		}
	case StepSend:
		if s.Template == "" {
			return invalid(s.ID, "a send step needs a template")
		}
	case StepCondition:
		c := s.If
		if c == nil || *c == (Condition{}) {
			return invalid(s.ID, "a condition step needs an if")
		}
		if c.Segment != "" && c.SavedSegment != "" {
			return invalid(s.ID, "segment and saved_segment are exclusive")
		}
	case StepTag, StepUntag:
		if s.Tag == "" {
			return invalid(s.ID, "a %s step needs a tag", s.Type)
		}
	case StepField:
		if s.Field == "" {
			return invalid(s.ID, "an update_field step needs a field")
		}
	case StepWebhook:
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return invalid(s.ID, "webhook url %q must be http(s)", s.URL)
		}
	case StepExit:
		if s.Next != "" {
			return invalid(s.ID, "an exit step has no next")
		}
	default:
		return invalid(s.ID, "step type %q (want wait, send, condition, tag, untag, update_field, webhook or exit)", s.Type)
	}
	if s.Type != StepCondition && (s.Then != "" || s.Else != "") {
		return invalid(s.ID, "then/else only apply to condition steps")
	}
	return nil
}

// successors are the step indexes a step can go to (-1: the run ends).
func (f *Flow) successors(i int, index map[string]int) []int {
	s := &f.Steps[i]
	next := i + 1
	if next >= len(f.Steps) {
		next = -1
	}
	if s.Next != "" {
		next = index[s.Next]
	}
	target := func(ref string) int {
		if ref == "" {
			return next
		}
		return index[ref]
	}
	switch {
	case s.Type == StepExit:
		return nil
	case s.Type == StepCondition:
		return []int{target(s.Then), target(s.Else)}
	case s.Type == StepWait && s.Event != "":
		return []int{target(s.OnEvent), target(s.OnTimeout)}
	}
	return []int{next}
}

// checkAcyclic rejects any loop among the steps (depth-first search).
func (f *Flow) checkAcyclic(index map[string]int) error {
	state := make([]byte, len(f.Steps)) // 0 new, 1 on the stack, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = 1
		for _, j := range f.successors(i, index) {
			if j < 0 {
				continue
			}
			switch state[j] {
			case 1:
				return &ValidationError{Step: f.Steps[i].ID, Msg: fmt.Sprintf("%v: it goes back to %s", ErrCycle, f.Steps[j].ID)}
			case 0:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		state[i] = 2
		return nil
	}
	for i := range f.Steps {
		if state[i] == 0 {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// stepIndex returns the index of step id (-1 if none).
func (f *Flow) stepIndex(id string) int {
	for i := range f.Steps {
		if f.Steps[i].ID == id {
			return i
		}
	}
	return -1
}

// after returns the index the run goes to after step i along ref ("":
// the default successor); -1 ends the run.
func (f *Flow) after(i int, ref string) int {
	if ref != "" {
		return f.stepIndex(ref)
	}
	if f.Steps[i].Next != "" {
		return f.stepIndex(f.Steps[i].Next)
	}
	if i+1 >= len(f.Steps) {
		return -1
	}
	return i + 1
}

func (f *Flow) stream() string {
	if f.Stream == "" {
		return "marketing"
	}
	return f.Stream
}

func (f *Flow) requireConsent() bool {
	if f.RequireConsent != nil {
		return *f.RequireConsent
	}
	return f.stream() == "marketing"
}

// location is the time zone of a contact (tz "" → the flow's → UTC).
func (f *Flow) location(tz string) *time.Location {
	for _, name := range []string{tz, f.TimeZone} {
		if name == "" {
			continue
		}
		if l, err := time.LoadLocation(name); err == nil {
			return l
		}
	}
	return time.UTC
}

// nextClock returns the first instant after now when the local time in
// loc is minutes after midnight.
func nextClock(now time.Time, loc *time.Location, minutes int) time.Time {
	l := now.In(loc)
	t := time.Date(l.Year(), l.Month(), l.Day(), minutes/60, minutes%60, 0, 0, loc)
	if !t.After(now) {
		t = time.Date(l.Year(), l.Month(), l.Day()+1, minutes/60, minutes%60, 0, 0, loc)
	}
	return t
}

// quietUntil returns when quiet hours q end if now is inside them in
// loc, else the zero time.
func quietUntil(q *QuietHours, now time.Time, loc *time.Location) time.Time {
	if q == nil {
		return time.Time{}
	}
	start, _ := parseClock(q.Start)
	end, _ := parseClock(q.End)
	l := now.In(loc)
	m := l.Hour()*60 + l.Minute()
	in := false
	if start < end {
		in = m >= start && m < end
	} else {
		in = m >= start || m < end
	}
	if !in {
		return time.Time{}
	}
	return nextClock(now, loc, end)
}
