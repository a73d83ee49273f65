package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"time"

	"github.com/petrel-mta/petrel/audience"
)

// CustomEvent is an event an app posts about a contact
// (POST /api/v1/events/custom).
type CustomEvent struct {
	// Contact is the contact's email address.
	Contact string `json:"contact"`
	Name    string `json:"name"`
	// Properties are available to templates as %event.NAME%.
	Properties map[string]any `json:"properties,omitempty"`
	// Audience limits the event to one audience (0: every audience that
	// has the address).
	Audience int64 `json:"audience,omitempty"`
	// Create adds the contact to Audience when it is not there (else an
	// unknown contact is ErrUnknownContact).
	Create bool `json:"create,omitempty"`
}

// maxProps bounds an event's properties (JSON bytes).
const maxProps = 64 << 10

// pendingEvent is one event waiting for the group commit.
type pendingEvent struct {
	aud, contact int64
	name, props  string
	done         chan error
}

// groupWriter commits the inbox rows of concurrent requests together:
// one transaction (one fsync) for all the events that arrived while the
// previous commit ran, each request answered after its row is durable.
type groupWriter struct {
	s    *Service
	ch   chan *pendingEvent
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newGroupWriter(s *Service) *groupWriter {
	g := &groupWriter{s: s, ch: make(chan *pendingEvent, 4096), stop: make(chan struct{}), done: make(chan struct{})}
	go g.loop()
	return g
}

func (g *groupWriter) loop() {
	defer close(g.done)
	for {
		var batch []*pendingEvent
		select {
		case <-g.stop:
			return
		case e := <-g.ch:
			batch = append(batch, e)
		}
	more:
		for len(batch) < 500 {
			select {
			case e := <-g.ch:
				batch = append(batch, e)
			default:
				break more
			}
		}
		err := g.write(batch)
		for _, e := range batch {
			e.done <- err
		}
		if err == nil {
			g.s.poke()
		}
	}
}

func (g *groupWriter) write(batch []*pendingEvent) error {
	s := g.s
	now := s.opts.Now().Unix()
	args := make([]any, 0, 5*len(batch))
	for _, e := range batch {
		args = append(args, e.aud, e.contact, e.name, e.props, now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO flow_inbox (audience_id, contact_id, name, props, at) VALUES `+tuples("(?,?,?,?,?)", len(batch))), args...); err != nil {
		return fmt.Errorf("flow: inbox: %w", err)
	}
	return nil
}

// Close stops the inbox writer (after the requests it took).
func (s *Service) Close() {
	s.inbox.once.Do(func() { close(s.inbox.stop) })
	<-s.inbox.done
}

// PostEvent records a custom event durably (it returns after the commit)
// for every contact with the address (in ev.Audience, or in every
// audience); the runner applies it: goals, waits for it, and triggers.
// It returns the contacts it was recorded for.
func (s *Service) PostEvent(ctx context.Context, ev CustomEvent) ([]int64, error) {
	if !namePattern.MatchString(ev.Name) {
		return nil, invalid("", "event name %q must be 1-128 of A-Z, a-z, 0-9, _ . : and -", ev.Name)
	}
	props, _ := json.Marshal(ev.Properties)
	if ev.Properties == nil {
		props = []byte("{}")
	}
	if len(props) > maxProps {
		return nil, invalid("", "properties are over %d bytes", maxProps)
	}
	if _, _, err := audience.NormalizeEmail(ev.Contact); err != nil {
		return nil, invalid("", "contact %q is not an email address", ev.Contact)
	}
	if ev.Create && ev.Audience == 0 {
		return nil, invalid("", "create needs an audience")
	}
	var only []int64
	if ev.Audience != 0 {
		only = []int64{ev.Audience}
	}
	ids, err := s.aud.ContactIDs(ctx, ev.Contact, only...)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 && ev.Create {
		c, _, err := s.aud.UpsertContact(ctx, ev.Audience, audience.ContactInput{Email: ev.Contact})
		if err != nil {
			return nil, err
		}
		ids[ev.Audience] = c.ID
	}
	var found []*pendingEvent
	for a, id := range ids {
		found = append(found, &pendingEvent{aud: a, contact: id, name: ev.Name, props: string(props), done: make(chan error, 1)})
	}
	if len(found) == 0 {
		return nil, ErrUnknownContact
	}
	out := make([]int64, len(found))
	for i, e := range found {
		out[i] = e.contact
		select {
		case s.inbox.ch <- e:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, e := range found {
		select {
		case err := <-e.done:
			if err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// Scan evaluates date and not_opened triggers over their audiences now
// and returns how many contacts entered. A contact enters a date flow at
// most once per date (a mark), and a not_opened flow once per idle
// stretch.
func (s *Service) Scan(ctx context.Context) (int, error) {
	fs, err := s.activeFlows(ctx, func(f *Flow) bool {
		return f.Trigger.Type == TriggerDate || f.Trigger.Type == TriggerNotOpened
	})
	if err != nil {
		return 0, err
	}
	now := s.opts.Now()
	entered := 0
	for _, f := range fs {
		var after int64
		for {
			cs, next, err := s.aud.ListContacts(ctx, f.Audience, audience.ListOptions{After: after, Limit: 1000})
			if err != nil {
				return entered, err
			}
			t, err := s.begin(ctx)
			if err != nil {
				return entered, err
			}
			for _, c := range cs {
				if c.Status != audience.Active {
					continue
				}
				mark, vars, err := s.scanMatch(ctx, t.db(), f, c, now)
				if err != nil {
					t.tx.Rollback()
					return entered, err
				}
				if mark == "" {
					continue
				}
				res, err := t.tx.ExecContext(ctx, s.q(`INSERT INTO flow_marks (flow_id, contact_id, mark) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`), f.ID, c.ID, mark)
				if err != nil {
					t.tx.Rollback()
					return entered, fmt.Errorf("flow: mark: %w", err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					continue
				}
				ok, err := t.enter(ctx, f, c.ID, c.Email, vars)
				if err != nil {
					t.tx.Rollback()
					return entered, err
				}
				if ok {
					entered++
				}
			}
			if err := t.commit(ctx); err != nil {
				return entered, err
			}
			if next == 0 || len(cs) == 0 {
				break
			}
			after = next
		}
	}
	if entered > 0 {
		s.poke()
	}
	return entered, nil
}

// scanMatch says whether c is due to enter f now, and under which mark.
func (s *Service) scanMatch(ctx context.Context, db querier, f *Flow, c audience.Contact, now time.Time) (string, map[string]string, error) {
	loc := f.location(c.TimeZone)
	local := now.In(loc)
	switch f.Trigger.Type {
	case TriggerDate:
		raw := c.Birthday
		if f.Trigger.Field != "birthday" {
			v, _ := c.Fields[f.Trigger.Field].(string)
			raw = v
		}
		if len(raw) < 10 {
			return "", nil, nil
		}
		d, err := time.Parse(time.DateOnly, raw[:10])
		if err != nil {
			return "", nil, nil
		}
		at := 9 * 60
		if f.Trigger.At != "" {
			at, _ = parseClock(f.Trigger.At)
		}
		if local.Hour()*60+local.Minute() < at {
			return "", nil, nil
		}
		// The day the trigger is for: today minus the offset.
		day := time.Date(local.Year(), local.Month(), local.Day()-f.Trigger.OffsetDays, 0, 0, 0, 0, time.UTC)
		yearly := f.Trigger.Field == "birthday"
		match := day.Month() == d.Month() && day.Day() == d.Day() && (yearly || day.Year() == d.Year())
		if !match {
			return "", nil, nil
		}
		return "date:" + local.Format(time.DateOnly), map[string]string{"event.name": "date", "event.date": raw[:10]}, nil
	case TriggerNotOpened:
		var last int64
		err := db.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(at), 0) FROM flow_engagement WHERE contact_id = ? AND kind = 'opened'`), c.ID).Scan(&last)
		if err != nil {
			return "", nil, fmt.Errorf("flow: engagement: %w", err)
		}
		if last == 0 {
			last = c.CreatedAt.Unix()
		}
		if now.Unix()-last < int64(f.Trigger.Days)*86400 {
			return "", nil, nil
		}
		return "not_opened:" + strconv.FormatInt(last, 10), map[string]string{"event.name": "not_opened"}, nil
	}
	return "", nil, nil
}

// JourneyEntry is one journal row of a contact.
type JourneyEntry struct {
	At      time.Time `json:"at"`
	Flow    string    `json:"flow"`
	Version int64     `json:"version"`
	Run     int64     `json:"run"`
	Step    string    `json:"step"`
	Kind    string    `json:"kind"`
	Detail  string    `json:"detail,omitempty"`
	Contact int64     `json:"contact_id"`
}

// Journey returns what the flows did with every contact with the address,
// oldest first (at most limit entries).
func (s *Service) Journey(ctx context.Context, email string, limit int) ([]JourneyEntry, error) {
	as, err := s.aud.Audiences(ctx)
	if err != nil {
		return nil, err
	}
	var ids []any
	for _, a := range as {
		c, err := s.aud.ContactByEmail(ctx, a.ID, email)
		if err == nil {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return nil, ErrUnknownContact
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, flow_id, version, run_id, step_id, kind, detail, contact_id FROM flow_journal WHERE contact_id IN (`+tuples("?", len(ids))+`) ORDER BY id LIMIT `+strconv.Itoa(limit)), ids...)
	if err != nil {
		return nil, fmt.Errorf("flow: journey: %w", err)
	}
	defer rows.Close()
	out := []JourneyEntry{}
	for rows.Next() {
		var j JourneyEntry
		var at int64
		if err := rows.Scan(&at, &j.Flow, &j.Version, &j.Run, &j.Step, &j.Kind, &j.Detail, &j.Contact); err != nil {
			return nil, err
		}
		j.At = time.Unix(at, 0).UTC()
		out = append(out, j)
	}
	return out, rows.Err()
}

// Stats are a flow's counts.
type Stats struct {
	Flow string `json:"flow"`
	// Entered counts runs; Active those not done; Waiting by step.
	Entered int64            `json:"entered"`
	Active  int64            `json:"active"`
	Waiting map[string]int64 `json:"waiting"`
	// Sent counts messages handed to ingest; Converted runs that reached
	// the goal; Exited ended runs by reason (completed, exited,
	// converted, flow_deleted, contact_deleted).
	Sent      int64            `json:"sent"`
	Converted int64            `json:"converted"`
	Exited    map[string]int64 `json:"exited"`
	// Steps counts journal entries per step and kind.
	Steps map[string]map[string]int64 `json:"steps"`
}

// Stats counts a flow's runs and steps.
func (s *Service) Stats(ctx context.Context, id string) (Stats, error) {
	if _, err := s.Versions(ctx, id); err != nil {
		return Stats{}, err
	}
	st := Stats{Flow: id, Waiting: map[string]int64{}, Exited: map[string]int64{}, Steps: map[string]map[string]int64{}}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT step_id, kind, COUNT(*) FROM flow_journal WHERE flow_id = ? GROUP BY step_id, kind`), id)
	if err != nil {
		return st, fmt.Errorf("flow: stats: %w", err)
	}
	for rows.Next() {
		var step, kind string
		var n int64
		if err := rows.Scan(&step, &kind, &n); err != nil {
			rows.Close()
			return st, err
		}
		if st.Steps[step] == nil {
			st.Steps[step] = map[string]int64{}
		}
		st.Steps[step][kind] += n
		switch kind {
		case KindEntered:
			st.Entered += n
		case KindSent:
			st.Sent += n
		case KindConverted:
			st.Converted += n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	rows, err = s.db.QueryContext(ctx, s.q(`SELECT version, step, state, reason, COUNT(*) FROM flow_runs WHERE flow_id = ? GROUP BY version, step, state, reason`), id)
	if err != nil {
		return st, fmt.Errorf("flow: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v, n int64
		var step int
		var state, reason string
		if err := rows.Scan(&v, &step, &state, &reason, &n); err != nil {
			return st, err
		}
		if state == stateDone {
			st.Exited[reason] += n
			continue
		}
		st.Active += n
		if state == stateWaiting {
			f, err := s.version(ctx, id, v)
			if err != nil {
				return st, err
			}
			if step < len(f.Steps) {
				st.Waiting[f.Steps[step].ID] += n
			}
		}
	}
	return st, rows.Err()
}

// isInvalid reports a ValidationError.
func isInvalid(err error) bool {
	var ve *ValidationError
	return errors.As(err, &ve)
}
