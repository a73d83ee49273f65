package campaign

// A campaign's life: draft → scheduled → sending ⇄ paused → sent, or
// cancelled. Every transition is one conditional UPDATE of the status
// column ("... WHERE id = ? AND status IN (from...)"): the row is the
// only truth, so a transition happens at most once even with several
// callers (or two petreld on one PostgreSQL database), and a restart
// finds every campaign where the last committed transition left it —
// Start resumes the sending ones, the scheduler starts the scheduled
// ones that are due. Sends honour pause and cancel between pages (the
// engine's Stop): a page is one ingest commit, never cut in half, and
// resume continues from the durable cursor, so a paused-and-resumed
// campaign mails nobody twice.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/internal/poll"
)

// StateError is a transition the campaign's status does not allow (HTTP
// 409).
type StateError struct {
	ID, Status, Action string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("campaign: %s is %s; cannot %s it", e.ID, e.Status, e.Action)
}

// transition moves id from one of from to to, atomically; it reports
// whether this call made the change. extra are more "col = value" sets.
func (s *Service) transition(ctx context.Context, id string, from []string, to, errText string, extra map[string]any) (bool, error) {
	now := time.Now().Unix()
	sets := []string{"status = " + s.arg(1), "error = " + s.arg(2), "updated_at = " + s.arg(3)}
	args := []any{to, errText, now}
	switch to {
	case StatusSending:
		sets = append(sets, "started_at = CASE WHEN started_at = 0 THEN "+s.arg(4)+" ELSE started_at END")
		args = append(args, now)
	case StatusSent, StatusFailed, StatusCancelled:
		sets = append(sets, "finished_at = "+s.arg(4))
		args = append(args, now)
	}
	for col, v := range extra {
		args = append(args, v)
		sets = append(sets, col+" = "+s.arg(len(args)))
	}
	args = append(args, id)
	q := "UPDATE campaigns SET " + strings.Join(sets, ", ") + " WHERE id = " + s.arg(len(args))
	if len(from) > 0 {
		var ph []string
		for _, f := range from {
			args = append(args, f)
			ph = append(ph, s.arg(len(args)))
		}
		q += " AND status IN (" + strings.Join(ph, ", ") + ")"
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("campaign: %s → %s: %w", id, to, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("campaign: %s → %s: %w", id, to, err)
	}
	return n == 1, nil
}

// move is transition for an API action: a refused transition is a
// *StateError naming the current status (or ErrNotFound).
func (s *Service) move(ctx context.Context, id, action string, from []string, to string, extra map[string]any) (Campaign, error) {
	ok, err := s.transition(ctx, id, from, to, "", extra)
	if err != nil {
		return Campaign{}, err
	}
	c, err := s.Get(ctx, id)
	if err != nil {
		return c, err
	}
	if !ok {
		return c, &StateError{ID: id, Status: c.Status, Action: action}
	}
	return c, nil
}

// Schedule sets when a draft (or a scheduled or failed campaign) starts.
// The scheduler starts it at that instant, after a restart too.
func (s *Service) Schedule(ctx context.Context, id string, sc Schedule) (Campaign, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return c, err
	}
	at, err := sc.resolve(time.Now())
	if err != nil {
		return c, err
	}
	if _, err := s.sendingKey(ctx, c.Spec); err != nil {
		return c, err
	}
	c.Spec.Schedule = &sc
	raw, err := specJSON(c.Spec)
	if err != nil {
		return c, err
	}
	c, err = s.move(ctx, id, "schedule", []string{StatusDraft, StatusScheduled, StatusFailed}, StatusScheduled,
		map[string]any{"send_at": at.Unix(), "spec": raw})
	if err == nil {
		s.wakeScheduler()
	}
	return c, err
}

// Send starts a draft, scheduled or failed campaign now (durably, so a
// restart resumes it); sending one that is already sending is a no-op.
// The pre-send check runs first and blocks the send when it fails.
func (s *Service) Send(ctx context.Context, id string) (Campaign, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return c, err
	}
	if c.Status == StatusSending {
		s.run(id)
		return c, nil
	}
	if err := s.checkBeforeSend(ctx, c); err != nil {
		return c, err
	}
	c, err = s.move(ctx, id, "send", []string{StatusDraft, StatusScheduled, StatusFailed}, StatusSending, nil)
	if err != nil {
		return c, err
	}
	s.run(id)
	return c, nil
}

// Pause stops a sending campaign after its current page (or holds a
// scheduled one). Nothing is lost: Resume continues from the cursor.
func (s *Service) Pause(ctx context.Context, id string) (Campaign, error) {
	c, err := s.move(ctx, id, "pause", []string{StatusSending, StatusScheduled}, StatusPaused, nil)
	if err != nil {
		return c, err
	}
	s.stop(id)
	return c, nil
}

// Resume continues a paused campaign from its durable cursor: at once if
// it had started or its time has come, otherwise it is scheduled again.
func (s *Service) Resume(ctx context.Context, id string) (Campaign, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return c, err
	}
	if c.Status != StatusPaused {
		return c, &StateError{ID: id, Status: c.Status, Action: "resume"}
	}
	to := StatusSending
	if c.StartedAt == nil && c.ScheduledAt != nil && c.ScheduledAt.After(time.Now()) {
		to = StatusScheduled
	}
	if to == StatusSending {
		if err := s.checkBeforeSend(ctx, c); err != nil {
			return c, err
		}
	}
	c, err = s.move(ctx, id, "resume", []string{StatusPaused}, to, nil)
	if err != nil {
		return c, err
	}
	if to == StatusSending {
		s.run(id)
	} else {
		s.wakeScheduler()
	}
	return c, nil
}

// Cancel ends a campaign for good (what it mailed stays mailed).
func (s *Service) Cancel(ctx context.Context, id string) (Campaign, error) {
	c, err := s.move(ctx, id, "cancel", []string{StatusDraft, StatusScheduled, StatusSending, StatusPaused}, StatusCancelled, nil)
	if err != nil {
		return c, err
	}
	s.stop(id)
	return c, nil
}

// stop asks a running send of id to stop after its current page.
func (s *Service) stop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.running[id]; ok && ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

func (s *Service) wakeScheduler() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// startDue starts every scheduled campaign whose time has come; the
// conditional transition makes each start happen once.
func (s *Service) startDue(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id FROM campaigns WHERE status = "+s.arg(1)+" AND send_at <= "+s.arg(2)+" ORDER BY send_at",
		StatusScheduled, time.Now().Unix())
	if err != nil {
		return 0, fmt.Errorf("campaign: due campaigns: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	started := 0
	for _, id := range ids {
		c, err := s.Get(ctx, id)
		if err != nil {
			return started, err
		}
		if cerr := s.checkBeforeSend(ctx, c); cerr != nil {
			// The check failed at send time: the campaign waits, paused
			// with the reason, for the operator.
			var ce *CheckError
			if !errors.As(cerr, &ce) {
				return started, cerr
			}
			if _, err := s.transition(ctx, id, []string{StatusScheduled}, StatusPaused, cerr.Error(), nil); err != nil {
				return started, err
			}
			s.log.Warn("scheduled campaign paused: pre-send check failed", "campaign", id, "err", cerr)
			continue
		}
		ok, err := s.transition(ctx, id, []string{StatusScheduled}, StatusSending, "", nil)
		if err != nil {
			return started, err
		}
		if ok {
			s.log.Info("scheduled campaign started", "campaign", id)
			s.run(id)
			started++
		}
	}
	return started, nil
}

// schedulerLoop starts due campaigns every second (at once when a
// schedule changes) until ctx ends.
func (s *Service) schedulerLoop(ctx context.Context) {
	poll.Run(ctx, time.Second, s.wake, s.log, "campaign scheduler", s.startDue)
}
