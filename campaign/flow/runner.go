package flow

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/poll"
)

// Run states.
const (
	stateReady   = "ready"   // the current step runs when its timer is due
	stateWaiting = "waiting" // the current step is a wait; its timer ends it
	stateDone    = "done"
)

// Journal kinds (flow_journal.kind; also the step events' reasons).
const (
	KindEntered   = "entered"
	KindWaiting   = "waiting"
	KindWaited    = "waited"
	KindTimeout   = "timeout"
	KindEvent     = "event_received"
	KindSent      = "sent"
	KindSkipped   = "skipped"
	KindDeferred  = "deferred"
	KindCondition = "condition"
	KindTagged    = "tagged"
	KindUntagged  = "untagged"
	KindField     = "field_updated"
	KindWebhook   = "webhook"
	KindExited    = "exited"
	KindConverted = "converted"
	KindCompleted = "completed"
)

// IdempotencyKey is the spool key of one send step of one run.
func IdempotencyKey(flow string, run int64, step string) string {
	return "flow:" + flow + ":" + strconv.FormatInt(run, 10) + ":" + step
}

// EventLog is the MTA's event log as the runner uses it (*queue.Queue):
// opened and clicked events feed engagement triggers and conditions, and
// every journal entry is appended to it as a "flow_step" event (so
// webhooks, the events API and metrics see the steps).
type EventLog interface {
	// EventsScan returns matching events and the Seq of the last event
	// it examined, matching or not (queue.Queue.EventsScan: events of
	// other types are skipped without being decoded).
	EventsScan(ctx context.Context, f events.EventFilter) ([]events.Event, string, error)
	AppendEvents(ctx context.Context, evs []events.Event) error
}

// Run processes flows until ctx ends: custom events, audience changes,
// engagement from log (nil: none), due timers (one page per commit) and,
// every ScanInterval, date and not_opened triggers.
func (s *Service) Run(ctx context.Context, log EventLog) {
	var lastScan time.Time
	poll.Run(ctx, time.Second, s.wake, s.log, "run automation flows", func(ctx context.Context) (int, error) {
		n, err := s.Step(ctx, log)
		if err != nil {
			return n, err
		}
		if now := time.Now(); now.Sub(lastScan) >= s.opts.ScanInterval {
			lastScan = now
			m, err := s.Scan(ctx)
			return n + m, err
		}
		return n, nil
	})
}

// Step does one pass: a page of each log and a page of due timers. It
// returns how many records it handled (0: nothing to do now).
func (s *Service) Step(ctx context.Context, log EventLog) (int, error) {
	total := 0
	for _, f := range []func(context.Context) (int, error){
		s.processInbox,
		s.processChanges,
		func(ctx context.Context) (int, error) { return s.processEngagement(ctx, log) },
		s.processTimers,
		func(ctx context.Context) (int, error) { return s.forwardSteps(ctx, log) },
	} {
		n, err := f(ctx)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// journalRow is one flow_journal row.
type journalRow struct {
	run     int64
	flow    string
	version int64
	step    string
	contact int64
	email   string
	kind    string
	detail  string
}

// txn collects the writes of one commit.
type txn struct {
	s        *Service
	tx       *sql.Tx
	now      int64
	journal  []journalRow
	timers   [][3]int64      // due, run, step
	deleted  map[string]bool // flow id -> deleted, per page
	contacts map[int64]*audience.Contact
	consent  map[int64]bool // contact -> marketing grant, per page
	moveStmt *sql.Stmt
	// flows are the flows, read once per transaction through it.
	flows []Flow
}

// db is the transaction once begun, else the pool: everything a
// transaction reads goes through it (see Service.versionOn).
func (t *txn) db() querier {
	if t.tx != nil {
		return t.tx
	}
	return t.s.db
}

// activeFlows is Service.activeFlows read through the transaction, once
// per transaction.
func (t *txn) activeFlows(ctx context.Context, keep func(*Flow) bool) ([]*Flow, error) {
	if t.flows == nil {
		fs, err := t.s.listOn(ctx, t.db())
		if err != nil {
			return nil, err
		}
		t.flows = fs
		if t.flows == nil {
			t.flows = []Flow{}
		}
	}
	return keepActive(t.flows, keep), nil
}

func (t *txn) log(r journalRow) { t.journal = append(t.journal, r) }

func (t *txn) flush(ctx context.Context) error {
	for len(t.timers) > 0 {
		n := min(len(t.timers), 300)
		args := make([]any, 0, 3*n)
		for _, tm := range t.timers[:n] {
			args = append(args, tm[0], tm[1], tm[2])
		}
		t.timers = t.timers[n:]
		if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO flow_timers (due_at, run_id, step) VALUES `+tuples("(?,?,?)", n)), args...); err != nil {
			return fmt.Errorf("flow: timers: %w", err)
		}
	}
	for len(t.journal) > 0 {
		n := min(len(t.journal), 300)
		args := make([]any, 0, 9*n)
		for _, j := range t.journal[:n] {
			args = append(args, j.run, j.flow, j.version, j.step, j.contact, j.email, j.kind, j.detail, t.now)
		}
		t.journal = t.journal[n:]
		if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO flow_journal (run_id, flow_id, version, step_id, contact_id, email, kind, detail, at) VALUES `+tuples("(?,?,?,?,?,?,?,?,?)", n)), args...); err != nil {
			return fmt.Errorf("flow: journal: %w", err)
		}
	}
	return nil
}

func tuples(t string, n int) string {
	return strings.TrimSuffix(strings.Repeat(t+",", n), ",")
}

func (s *Service) begin(ctx context.Context) (*txn, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("flow: begin: %w", err)
	}
	return &txn{s: s, tx: tx, now: s.opts.Now().Unix()}, nil
}

func (t *txn) commit(ctx context.Context) error {
	if err := t.flush(ctx); err != nil {
		t.tx.Rollback()
		return err
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("flow: commit: %w", err)
	}
	return nil
}

// activeFlows returns the current version of every flow that takes new
// contacts, matching keep.
func (s *Service) activeFlows(ctx context.Context, keep func(*Flow) bool) ([]*Flow, error) {
	fs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	return keepActive(fs, keep), nil
}

// keepActive returns the flows of fs that take new contacts, matching keep.
func keepActive(fs []Flow, keep func(*Flow) bool) []*Flow {
	var out []*Flow
	for i := range fs {
		if !fs[i].Paused && keep(&fs[i]) {
			out = append(out, &fs[i])
		}
	}
	return out
}

// enter puts a contact into f unless the re-entry policy forbids it (or
// it is in f already). The run starts at once (a timer due now).
func (t *txn) enter(ctx context.Context, f *Flow, contact int64, email string, vars map[string]string) (bool, error) {
	var last sql.NullInt64
	var state sql.NullString
	err := t.tx.QueryRowContext(ctx, t.s.q(`SELECT started, state FROM flow_runs WHERE flow_id = ? AND contact_id = ? ORDER BY id DESC LIMIT 1`), f.ID, contact).Scan(&last, &state)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("flow: enter: %w", err)
	}
	if last.Valid {
		switch {
		case state.String != stateDone:
			return false, nil // in the flow already: no second run (event floods)
		case f.Reentry.Policy == ReentryOnce:
			return false, nil
		case f.Reentry.Policy == ReentryDays && t.now-last.Int64 < int64(f.Reentry.Days)*86400:
			return false, nil
		}
	}
	raw, _ := json.Marshal(vars)
	var id int64
	if err := t.tx.QueryRowContext(ctx, t.s.q(`INSERT INTO flow_runs (flow_id, version, audience_id, contact_id, step, state, vars, started, updated) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id`),
		f.ID, f.Version, f.Audience, contact, stateReady, string(raw), t.now, t.now).Scan(&id); err != nil {
		return false, fmt.Errorf("flow: enter: %w", err)
	}
	t.timers = append(t.timers, [3]int64{t.now, id, 0})
	t.log(journalRow{run: id, flow: f.ID, version: f.Version, step: f.Steps[0].ID, contact: contact, email: email, kind: KindEntered})
	return true, nil
}

// openRun is a run not done, as events see it.
type openRun struct {
	id, version, contact int64
	flow                 string
	step                 int
	state, waitEvent     string
}

func (t *txn) openRuns(ctx context.Context, contact int64) ([]openRun, error) {
	rows, err := t.tx.QueryContext(ctx, t.s.q(`SELECT id, flow_id, version, step, state, wait_event FROM flow_runs WHERE contact_id = ? AND state <> ?`), contact, stateDone)
	if err != nil {
		return nil, fmt.Errorf("flow: runs: %w", err)
	}
	defer rows.Close()
	var out []openRun
	for rows.Next() {
		r := openRun{contact: contact}
		if err := rows.Scan(&r.id, &r.flow, &r.version, &r.step, &r.state, &r.waitEvent); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// move sets a run's position; step < 0 ends it with reason.
func (t *txn) move(ctx context.Context, run int64, step int, state, waitEvent, reason string) error {
	if step < 0 {
		state = stateDone
		step = 0
	}
	if t.moveStmt == nil {
		st, err := t.tx.PrepareContext(ctx, t.s.q(`UPDATE flow_runs SET step = ?, state = ?, wait_event = ?, reason = ?, updated = ? WHERE id = ?`))
		if err != nil {
			return fmt.Errorf("flow: move run: %w", err)
		}
		t.moveStmt = st
	}
	_, err := t.moveStmt.ExecContext(ctx, step, state, waitEvent, reason, t.now, run)
	if err != nil {
		return fmt.Errorf("flow: move run: %w", err)
	}
	return nil
}

func (t *txn) dropTimers(ctx context.Context, run int64) error {
	_, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM flow_timers WHERE run_id = ?`), run)
	return err
}

// event applies one event of a contact: goals end runs (converted),
// waits for it resume, and flows it triggers take the contact.
func (t *txn) event(ctx context.Context, aud, contact int64, email, name string, vars map[string]string, trigger func(*Flow) bool) error {
	runs, err := t.openRuns(ctx, contact)
	if err != nil {
		return err
	}
	for _, r := range runs {
		f, err := t.s.versionOn(ctx, t.db(), r.flow, r.version)
		if err != nil {
			return err
		}
		stepID := f.Steps[min(r.step, len(f.Steps)-1)].ID
		switch {
		case f.Goal != "" && f.Goal == name:
			if err := t.dropTimers(ctx, r.id); err != nil {
				return err
			}
			if err := t.move(ctx, r.id, -1, "", "", KindConverted); err != nil {
				return err
			}
			t.log(journalRow{run: r.id, flow: f.ID, version: f.Version, step: stepID, contact: contact, email: email, kind: KindConverted, detail: name})
		case r.state == stateWaiting && r.waitEvent == name:
			next := f.after(r.step, f.Steps[r.step].OnEvent)
			if err := t.dropTimers(ctx, r.id); err != nil {
				return err
			}
			reason := ""
			if next < 0 {
				reason = KindCompleted
			}
			if err := t.move(ctx, r.id, next, stateReady, "", reason); err != nil {
				return err
			}
			if next >= 0 {
				t.timers = append(t.timers, [3]int64{t.now, r.id, int64(next)})
			}
			t.log(journalRow{run: r.id, flow: f.ID, version: f.Version, step: stepID, contact: contact, email: email, kind: KindEvent, detail: name})
		}
	}
	if trigger == nil {
		return nil
	}
	fs, err := t.activeFlows(ctx, func(f *Flow) bool { return f.Audience == aud && trigger(f) })
	if err != nil {
		return err
	}
	for _, f := range fs {
		if _, err := t.enter(ctx, f, contact, email, vars); err != nil {
			return err
		}
	}
	return nil
}

// processInbox handles a page of custom events after the inbox cursor,
// in one transaction with the cursor, and deletes them.
func (s *Service) processInbox(ctx context.Context) (int, error) {
	pos, err := s.cursor(ctx, "inbox")
	if err != nil {
		return 0, err
	}
	after, _ := strconv.ParseInt(pos, 10, 64)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, audience_id, contact_id, name, props FROM flow_inbox WHERE id > ? ORDER BY id LIMIT 1000`), after)
	if err != nil {
		return 0, fmt.Errorf("flow: inbox: %w", err)
	}
	type ev struct {
		id, aud, contact int64
		name, props      string
	}
	var evs []ev
	for rows.Next() {
		var e ev
		if err := rows.Scan(&e.id, &e.aud, &e.contact, &e.name, &e.props); err != nil {
			rows.Close()
			return 0, err
		}
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(evs) == 0 {
		return 0, err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer t.tx.Rollback()
	seen := map[string]bool{}
	for _, e := range evs {
		// A flood of one event for one contact in one page acts once.
		k := fmt.Sprintf("%d\x00%s", e.contact, e.name)
		if seen[k] {
			continue
		}
		seen[k] = true
		vars := map[string]string{}
		var props map[string]any
		if json.Unmarshal([]byte(e.props), &props) == nil {
			for pk, pv := range props {
				if str, ok := pv.(string); ok {
					vars["event."+pk] = str
				} else {
					b, _ := json.Marshal(pv)
					vars["event."+pk] = string(b)
				}
			}
		}
		vars["event.name"] = e.name
		name := e.name
		if err := t.event(ctx, e.aud, e.contact, "", name, vars, func(f *Flow) bool {
			return f.Trigger.Type == TriggerEvent && f.Trigger.Event == name
		}); err != nil {
			return 0, err
		}
	}
	last := evs[len(evs)-1].id
	if err := s.setCursor(ctx, t.tx, "inbox", strconv.FormatInt(last, 10)); err != nil {
		return 0, err
	}
	if _, err := t.tx.ExecContext(ctx, s.q(`DELETE FROM flow_inbox WHERE id <= ?`), last); err != nil {
		return 0, err
	}
	return len(evs), t.commit(ctx)
}

// processChanges follows audience's change log (tag added/removed,
// joined) after its cursor.
func (s *Service) processChanges(ctx context.Context) (int, error) {
	pos, err := s.cursor(ctx, "changes")
	if err != nil {
		return 0, err
	}
	after, _ := strconv.ParseInt(pos, 10, 64)
	chs, err := s.aud.Changes(ctx, after, 1000)
	if err != nil || len(chs) == 0 {
		return 0, err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer t.tx.Rollback()
	for _, ch := range chs {
		kind, value := ch.Kind, ch.Value
		vars := map[string]string{"event.name": kind}
		if value != "" {
			vars["event.tag"] = value
		}
		if err := t.event(ctx, ch.Audience, ch.Contact, "", kind, vars, func(f *Flow) bool {
			switch f.Trigger.Type {
			case TriggerJoined:
				return kind == audience.ChangeJoined
			case TriggerTagAdded:
				return kind == audience.ChangeTagAdded && f.Trigger.Tag == value
			case TriggerTagRemoved:
				return kind == audience.ChangeTagRemoved && f.Trigger.Tag == value
			}
			return false
		}); err != nil {
			return 0, err
		}
	}
	last := chs[len(chs)-1].ID
	if err := s.setCursor(ctx, t.tx, "changes", strconv.FormatInt(last, 10)); err != nil {
		return 0, err
	}
	if err := t.commit(ctx); err != nil {
		return 0, err
	}
	// The runner is the change log's only reader.
	return len(chs), s.aud.PruneChanges(ctx, last)
}

// processEngagement follows the MTA event log for opened and clicked
// events: it records them per contact (conditions, not_opened) and
// enters opened/clicked triggers.
func (s *Service) processEngagement(ctx context.Context, log EventLog) (int, error) {
	if log == nil {
		return 0, nil
	}
	after, err := s.cursor(ctx, "events")
	if err != nil {
		return 0, err
	}
	// Only opens and clicks are decoded: the log is mostly deliveries.
	evs, scanned, err := log.EventsScan(ctx, events.EventFilter{After: after, Types: []string{"opened", "clicked"}, Limit: 1000})
	if err != nil || scanned == "" || scanned == after {
		return 0, err
	}
	if len(evs) == 0 {
		// Nothing but other types since the cursor: move past them. No
		// record was handled, so the runner waits for its next wake-up or
		// interval (a second) instead of chasing every delivery.
		return 0, s.setCursor(ctx, s.db, "events", scanned)
	}
	auds, err := s.aud.Audiences(ctx)
	if err != nil {
		return 0, err
	}
	// The contacts are looked up before the transaction begins: it reads
	// only through itself (see Service.versionOn).
	type hit struct {
		ev *events.Event
		a  int64
		c  audience.Contact
	}
	var hits []hit
	for i := range evs {
		ev := &evs[i]
		if (ev.Type != "opened" && ev.Type != "clicked") || ev.Machine || ev.Recipient == "" {
			continue
		}
		// A campaign's tracking token carries the contact id (never the
		// address); other senders' events carry the address.
		id, idErr := strconv.ParseInt(ev.Recipient, 10, 64)
		for _, a := range auds {
			var c audience.Contact
			var err error
			if idErr == nil {
				c, err = s.aud.Contact(ctx, a.ID, id)
			} else {
				c, err = s.aud.ContactByEmail(ctx, a.ID, ev.Recipient)
			}
			if audience.IsKind(err, audience.NotFound) || audience.IsKind(err, audience.Invalid) {
				continue // not a contact of this audience, or no address one could have
			}
			if err != nil {
				// Not moving the cursor: the page is read again, so a
				// transient failure drops no open or click.
				return 0, fmt.Errorf("flow: engagement contact: %w", err)
			}
			hits = append(hits, hit{ev, a.ID, c})
		}
	}
	t, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer t.tx.Rollback()
	for _, h := range hits {
		ev, c := h.ev, h.c
		if _, err := t.tx.ExecContext(ctx, s.q(`INSERT INTO flow_engagement (contact_id, campaign, kind, at) VALUES (?, ?, ?, ?)`), c.ID, ev.Campaign, ev.Type, ev.Time.Unix()); err != nil {
			return 0, fmt.Errorf("flow: engagement: %w", err)
		}
		typ, camp := ev.Type, ev.Campaign
		vars := map[string]string{"event.name": typ, "event.campaign": camp, "event.url": ev.URL}
		if err := t.event(ctx, h.a, c.ID, c.Email, typ, vars, func(f *Flow) bool {
			return f.Trigger.Type == typ && (f.Trigger.Campaign == "" || f.Trigger.Campaign == camp)
		}); err != nil {
			return 0, err
		}
	}
	if err := s.setCursor(ctx, t.tx, "events", scanned); err != nil {
		return 0, err
	}
	return len(evs), t.commit(ctx)
}

// forwardSteps appends journal entries after the "eventlog" cursor to
// the event log as "flow_step" events (Campaign "flow:<id>", Reason
// "<step>:<kind>", MsgID the queue id of a sent message), one append per
// page, then moves the cursor: at least once (a crash in between repeats
// one page).
func (s *Service) forwardSteps(ctx context.Context, log EventLog) (int, error) {
	if log == nil {
		return 0, nil
	}
	pos, err := s.cursor(ctx, "eventlog")
	if err != nil {
		return 0, err
	}
	after, _ := strconv.ParseInt(pos, 10, 64)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT j.id, j.flow_id, j.step_id, j.kind, j.detail, j.email, j.contact_id, r.audience_id, j.at
		FROM flow_journal j JOIN flow_runs r ON r.id = j.run_id WHERE j.id > ? ORDER BY j.id LIMIT 1000`), after)
	if err != nil {
		return 0, fmt.Errorf("flow: journal: %w", err)
	}
	type row struct {
		id, contact, aud, at     int64
		flow, step, kind, detail string
		email                    string
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.flow, &r.step, &r.kind, &r.detail, &r.email, &r.contact, &r.aud, &r.at); err != nil {
			rows.Close()
			return 0, err
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(rs) == 0 {
		return 0, err
	}
	emails := map[int64]string{}
	evs := make([]events.Event, 0, len(rs))
	for _, r := range rs {
		if r.email == "" {
			if e, ok := emails[r.contact]; ok {
				r.email = e
			} else if c, err := s.aud.Contact(ctx, r.aud, r.contact); err == nil {
				r.email, emails[r.contact] = c.Email, c.Email
			}
		}
		ev := events.Event{Type: "flow_step", Time: time.Unix(r.at, 0).UTC(), Recipient: r.email, Campaign: "flow:" + r.flow, Reason: r.step + ":" + r.kind}
		if r.kind == KindSent {
			ev.MsgID = r.detail
		}
		evs = append(evs, ev)
	}
	if err := log.AppendEvents(ctx, evs); err != nil {
		return 0, err
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO flow_cursors (name, pos) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`), "eventlog", strconv.FormatInt(rs[len(rs)-1].id, 10))
	return len(rs), err
}

// dueRun is a due timer with its run.
type dueRun struct {
	timer, run, aud, contact, version int64
	timerStep, step                   int
	flow, state                       string
	vars                              map[string]string
}

// plan is what processing one due run decided.
type plan struct {
	d                *dueRun
	f                *Flow
	contact          audience.Contact
	step             int
	state, waitEvent string
	reason           string
	timer            int64 // due time of the next timer (0: none)
	sends            []int // indexes into the page's submissions
	sendRows         []int // their journal rows, completed after the submit
}

// processTimers runs one page of due timers, oldest due first: steps are
// computed per run, the page's messages go to ingest in one SubmitBatch,
// then positions, timers and journal commit in one transaction.
func (s *Service) processTimers(ctx context.Context) (int, error) {
	now := s.opts.Now()
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT t.id, t.step, r.id, r.flow_id, r.version, r.audience_id, r.contact_id, r.step, r.state, r.vars
		FROM flow_timers t JOIN flow_runs r ON r.id = t.run_id WHERE t.due_at <= ? ORDER BY t.due_at, t.id LIMIT ?`), now.Unix(), s.opts.PageSize)
	if err != nil {
		return 0, fmt.Errorf("flow: due timers: %w", err)
	}
	var due []*dueRun
	for rows.Next() {
		d := &dueRun{}
		var vars string
		if err := rows.Scan(&d.timer, &d.timerStep, &d.run, &d.flow, &d.version, &d.aud, &d.contact, &d.step, &d.state, &vars); err != nil {
			rows.Close()
			return 0, err
		}
		json.Unmarshal([]byte(vars), &d.vars)
		due = append(due, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(due) == 0 {
		return 0, err
	}
	// Plan first, without a transaction: steps write contacts (tags,
	// fields) through audience, which takes the write lock itself.
	t := &txn{s: s, now: now.Unix()}
	byAud := map[int64][]int64{}
	for _, d := range due {
		byAud[d.aud] = append(byAud[d.aud], d.contact)
	}
	t.contacts = map[int64]*audience.Contact{}
	t.consent = map[int64]bool{}
	for aud, ids := range byAud {
		cs, err := s.aud.ContactsByID(ctx, aud, ids)
		if err != nil && !audience.IsKind(err, audience.NotFound) {
			return 0, err
		}
		for i := range cs {
			t.contacts[cs[i].ID] = &cs[i]
		}
		ok, err := s.aud.Consented(ctx, aud, ids, "marketing")
		if err != nil {
			return 0, err
		}
		maps.Copy(t.consent, ok)
	}
	var subs []ingest.Submission
	var plans []*plan
	planned := map[int64]int{} // contact -> sends planned in this page (frequency cap)
	seenRun := map[int64]bool{}
	for _, d := range due {
		if d.state == stateDone || d.timerStep != d.step || seenRun[d.run] {
			continue // stale timer: deleted below
		}
		seenRun[d.run] = true
		p, err := s.advance(ctx, t, d, now, &subs, planned)
		if err != nil {
			return 0, err
		}
		if p != nil {
			plans = append(plans, p)
		}
	}
	var rcs []ingest.Receipt
	if len(subs) > 0 {
		if rcs, err = s.sub.SubmitBatch(ctx, subs); err != nil {
			return 0, fmt.Errorf("flow: submit: %w", err)
		}
	}
	if t.tx, err = s.db.BeginTx(ctx, nil); err != nil {
		return 0, fmt.Errorf("flow: begin: %w", err)
	}
	defer t.tx.Rollback()
	ids := make([]any, len(due))
	for i, d := range due {
		ids[i] = d.timer
	}
	if _, err := t.tx.ExecContext(ctx, s.q(`DELETE FROM flow_timers WHERE id IN (`+tuples("?", len(ids))+`)`), ids...); err != nil {
		return 0, fmt.Errorf("flow: timers: %w", err)
	}
	for _, p := range plans {
		for i, si := range p.sends {
			j := &t.journal[p.sendRows[i]]
			if rc := rcs[si]; rc.Err != nil {
				j.kind, j.detail = KindSkipped, "refused"
				if errors.Is(rc.Err, ingest.ErrAllSuppressed) {
					j.detail = "suppressed"
				}
			} else {
				j.detail = rc.ID
			}
		}
		if err := t.move(ctx, p.d.run, p.step, p.state, p.waitEvent, p.reason); err != nil {
			return 0, err
		}
		if p.timer > 0 {
			t.timers = append(t.timers, [3]int64{p.timer, p.d.run, int64(p.step)})
		}
	}
	return len(due), t.commit(ctx)
}

// advance runs d's steps from its position until a wait, a deferral or
// the end, adding its messages to subs.
func (s *Service) advance(ctx context.Context, t *txn, d *dueRun, now time.Time, subs *[]ingest.Submission, planned map[int64]int) (*plan, error) {
	f, err := s.version(ctx, d.flow, d.version)
	if err != nil {
		return nil, err
	}
	p := &plan{d: d, f: f, step: d.step}
	end := func(reason string) *plan {
		p.step, p.reason = -1, reason
		return p
	}
	logStep := func(i int, kind, detail string) {
		t.log(journalRow{run: d.run, flow: f.ID, version: f.Version, step: f.Steps[i].ID, contact: d.contact, email: p.contact.Email, kind: kind, detail: detail})
	}
	gone, known := t.deleted[f.ID]
	if !known {
		if gone, err = s.isDeleted(ctx, f.ID); err != nil {
			return nil, err
		}
		if t.deleted == nil {
			t.deleted = map[string]bool{}
		}
		t.deleted[f.ID] = gone
	}
	if gone {
		return end("flow_deleted"), nil
	}
	cp := t.contacts[d.contact]
	if cp == nil {
		return end("contact_deleted"), nil
	}
	c := *cp
	p.contact = c
	i := d.step
	if d.state == stateWaiting {
		st := &f.Steps[i]
		if st.Event != "" {
			logStep(i, KindTimeout, st.Event)
			i = f.after(i, st.OnTimeout)
		} else {
			logStep(i, KindWaited, "")
			i = f.after(i, "")
		}
	}
	loc := f.location(c.TimeZone)
	for guard := 0; guard <= len(f.Steps); guard++ {
		if i < 0 {
			logStep(len(f.Steps)-1, KindCompleted, "")
			return end(KindCompleted), nil
		}
		st := &f.Steps[i]
		p.step = i
		next := f.after(i, "")
		switch st.Type {
		case StepWait:
			var due time.Time
			switch {
			case st.Duration > 0:
				due = now.Add(time.Duration(st.Duration))
			case st.Until != "":
				m, _ := parseClock(st.Until)
				due = nextClock(now, loc, m)
			default:
				due = now.Add(time.Duration(st.Timeout))
				p.waitEvent = st.Event
			}
			p.state, p.timer = stateWaiting, max(due.Unix(), now.Unix())
			logStep(i, KindWaiting, due.UTC().Format(time.RFC3339))
			return p, nil
		case StepSend:
			if c.Status != audience.Active {
				logStep(i, KindSkipped, string(c.Status))
				i = next
				continue
			}
			if f.requireConsent() {
				if !t.consent[c.ID] {
					logStep(i, KindSkipped, "no_consent")
					i = next
					continue
				}
			}
			if q := quietUntil(f.QuietHours, now, loc); !q.IsZero() {
				logStep(i, KindDeferred, "quiet_hours")
				p.state, p.timer = stateReady, q.Unix()
				return p, nil
			}
			if until, err := s.capped(ctx, t, c, now, planned[c.ID]); err != nil {
				return nil, err
			} else if !until.IsZero() {
				logStep(i, KindDeferred, "frequency_cap")
				p.state, p.timer = stateReady, until.Unix()
				return p, nil
			}
			sub, err := s.message(ctx, f, st, d, c, now)
			if err != nil {
				logStep(i, KindSkipped, "render_error")
				s.log.Warn("flow: message not built", "flow", f.ID, "step", st.ID, "contact", c.ID, "err", err)
				i = next
				continue
			}
			p.sends = append(p.sends, len(*subs))
			p.sendRows = append(p.sendRows, len(t.journal))
			logStep(i, KindSent, "")
			*subs = append(*subs, sub)
			planned[c.ID]++
		case StepCondition:
			ok, err := s.holds(ctx, f, st.If, c, now)
			if err != nil {
				return nil, err
			}
			logStep(i, KindCondition, strconv.FormatBool(ok))
			if ok {
				next = f.after(i, st.Then)
			} else {
				next = f.after(i, st.Else)
			}
		case StepTag, StepUntag:
			if _, err := s.aud.TagContacts(ctx, c.AudienceID, []int64{c.ID}, []string{st.Tag}, st.Type == StepUntag); err != nil {
				return nil, err
			}
			kind := KindTagged
			if st.Type == StepUntag {
				kind = KindUntagged
				c.Tags = slices.DeleteFunc(slices.Clone(c.Tags), func(x string) bool { return x == st.Tag })
			} else if !slices.Contains(c.Tags, st.Tag) {
				c.Tags = append(slices.Clone(c.Tags), st.Tag)
			}
			*cp = c // later runs of this page see the change
			logStep(i, kind, st.Tag)
		case StepField:
			if _, _, err := s.aud.UpsertContact(ctx, c.AudienceID, audience.ContactInput{Email: c.Email, Fields: map[string]any{st.Field: st.Value}}); err != nil {
				logStep(i, KindSkipped, "field: "+err.Error())
			} else {
				logStep(i, KindField, st.Field)
				c.Fields = maps.Clone(c.Fields)
				if c.Fields == nil {
					c.Fields = map[string]any{}
				}
				c.Fields[st.Field] = st.Value
				*cp = c
			}
		case StepWebhook:
			logStep(i, KindWebhook, s.webhook(ctx, f, st, d, c))
		case StepExit:
			logStep(i, KindExited, "exit_step")
			return end(KindExited), nil
		}
		i = next
	}
	return nil, fmt.Errorf("flow %s: run %d does not end (cycle)", f.ID, d.run)
}

// capped returns when c may get its next flow message under the
// frequency cap (zero: now).
func (s *Service) capped(ctx context.Context, t *txn, c audience.Contact, now time.Time, planned int) (time.Time, error) {
	if s.opts.FrequencyCap <= 0 {
		return time.Time{}, nil
	}
	since := now.Add(-s.opts.FrequencyWindow)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at FROM flow_journal WHERE contact_id = ? AND kind = ? AND at > ? ORDER BY at`), c.ID, KindSent, since.Unix())
	if err != nil {
		return time.Time{}, fmt.Errorf("flow: frequency cap: %w", err)
	}
	ats, err := scanInts(rows)
	if err != nil {
		return time.Time{}, err
	}
	if c.LastSent != nil && c.LastSent.After(since) {
		ats = append([]int64{c.LastSent.Unix()}, ats...)
	}
	if len(ats)+planned < s.opts.FrequencyCap {
		return time.Time{}, nil
	}
	oldest := now.Unix()
	if len(ats) > 0 {
		oldest = ats[0]
	}
	return time.Unix(oldest, 0).Add(s.opts.FrequencyWindow + time.Second), nil
}

// message builds the submission of a send step for one run.
func (s *Service) message(ctx context.Context, f *Flow, st *Step, d *dueRun, c audience.Contact, now time.Time) (ingest.Submission, error) {
	comp, err := s.compiled(ctx, st.Template, st.TemplateVersion)
	if err != nil {
		return ingest.Submission{}, err
	}
	vals := campaign.ContactValues(c)
	for k, v := range d.vars {
		vals[k] = v
	}
	if s.unsub != nil {
		vals["unsubscribe_url"] = s.unsub(f.stream(), c.Email)
	}
	env := campaign.Envelope{
		From:  &mail.Address{Name: f.FromName, Address: f.From},
		To:    []*mail.Address{{Name: c.Name, Address: c.Email}},
		Date:  now,
		Extra: [][2]string{{"X-Petrel-Campaign", "flow:" + f.ID}},
	}
	if f.ReplyTo != "" {
		env.ReplyTo = []*mail.Address{{Address: f.ReplyTo}}
	}
	msg, err := campaign.BuildMessage(env, comp.Render(vals))
	if err != nil {
		return ingest.Submission{}, err
	}
	return ingest.Submission{Envelope: ingest.Envelope{
		From: f.From, Rcpts: []string{c.Email}, Stream: f.stream(), Campaign: "flow:" + f.ID, Source: "flow",
		IdempotencyKey: IdempotencyKey(f.ID, d.run, st.ID), Trace: ingest.Trace{Helo: "flow " + f.ID, With: "flow"},
	}, Body: msg}, nil
}

// compiled returns a template version compiled, cached (versions never
// change).
func (s *Service) compiled(ctx context.Context, call string, v int64) (*campaign.Compiled, error) {
	key := fmt.Sprintf("tpl:%s@%d", call, v)
	s.mu.Lock()
	c := s.tpls[key]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	tp, err := s.tpl.Get(ctx, call, v)
	if err != nil {
		return nil, err
	}
	if c, err = campaign.Compile(tp.Content, nil); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.tpls[key] = c
	s.mu.Unlock()
	return c, nil
}

// holds evaluates a condition for c.
func (s *Service) holds(ctx context.Context, f *Flow, cond *Condition, c audience.Contact, now time.Time) (bool, error) {
	if cond.HasTag != "" && !contains(c.Tags, cond.HasTag) {
		return false, nil
	}
	if cond.NotTag != "" && contains(c.Tags, cond.NotTag) {
		return false, nil
	}
	expr := cond.Segment
	if cond.SavedSegment != "" {
		segs, err := s.aud.Segments(ctx, c.AudienceID)
		if err != nil {
			return false, err
		}
		expr = "false"
		for _, sg := range segs {
			if sg.Name == cond.SavedSegment {
				expr = sg.Expression
			}
		}
	}
	if expr != "" {
		// Membership: the segment's page starting just before c is c.
		cs, _, err := s.aud.ListContacts(ctx, c.AudienceID, audience.ListOptions{Segment: expr, After: c.ID - 1, Limit: 1})
		if err != nil {
			return false, err
		}
		if len(cs) == 0 || cs[0].ID != c.ID {
			return false, nil
		}
	}
	for kind, camp := range map[string]string{"opened": cond.Opened, "clicked": cond.Clicked} {
		if camp == "" {
			continue
		}
		q := `SELECT COUNT(*) FROM flow_engagement WHERE contact_id = ? AND kind = ? AND at >= ?`
		since := int64(0)
		if cond.Within > 0 {
			since = now.Add(-time.Duration(cond.Within)).Unix()
		}
		args := []any{c.ID, kind, since}
		if camp != "*" {
			q += ` AND campaign = ?`
			args = append(args, camp)
		}
		var n int
		if err := s.db.QueryRowContext(ctx, s.q(q), args...).Scan(&n); err != nil {
			return false, fmt.Errorf("flow: engagement: %w", err)
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// webhook posts the run to the step's URL and returns the outcome.
func (s *Service) webhook(ctx context.Context, f *Flow, st *Step, d *dueRun, c audience.Contact) string {
	body, _ := json.Marshal(map[string]any{"flow": f.ID, "version": f.Version, "step": st.ID, "run": d.run,
		"contact": map[string]any{"id": c.ID, "email": c.Email, "name": c.Name, "fields": c.Fields, "tags": c.Tags}, "event": d.vars})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL, bytes.NewReader(body))
	if err != nil {
		return "error: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", IdempotencyKey(f.ID, d.run, st.ID))
	resp, err := s.opts.Webhooks.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}
