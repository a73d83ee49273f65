package audience

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// List cleaning: a job runs the contacts of an audience (or of a segment
// of it) through address verification (petreld passes verify's
// VerifyMany: syntax, domain, MX, SMTP probe, catch-all, disposable,
// role, typo), stores each verdict and its time on the contact
// (contact_verifications) and tags the contact verify:invalid or
// verify:risky, so that a segment excludes them
// (!("verify:invalid" in tags)). The status is not changed: it follows
// the suppression list, and a verdict is not a suppression.

var cleaningPart = schemaPart{name: "cleaning", stmts: []string{
	`CREATE TABLE contact_verifications (
		contact_id BIGINT PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
		verdict TEXT NOT NULL,
		reasons TEXT NOT NULL DEFAULT '',
		suggestion TEXT NOT NULL DEFAULT '',
		checked_at BIGINT NOT NULL)`,
	`CREATE TABLE cleaning_jobs (
		id {{id}},
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		segment TEXT NOT NULL DEFAULT '',
		older_than BIGINT NOT NULL DEFAULT 0,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		cursor_id BIGINT NOT NULL DEFAULT 0,
		checked BIGINT NOT NULL DEFAULT 0,
		skipped BIGINT NOT NULL DEFAULT 0,
		valid BIGINT NOT NULL DEFAULT 0,
		risky BIGINT NOT NULL DEFAULT 0,
		invalid BIGINT NOT NULL DEFAULT 0,
		unknown BIGINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL)`,
}}

// Verdicts stored on contacts.
const (
	VerdictValid   = "valid"
	VerdictRisky   = "risky"
	VerdictInvalid = "invalid"
	VerdictUnknown = "unknown"
)

// Tags list cleaning sets (one of them, or none for valid and unknown).
const (
	TagInvalid = "verify:invalid"
	TagRisky   = "verify:risky"
)

// Verification is one address's verdict.
type Verification struct {
	// Verdict is valid, risky, invalid or unknown.
	Verdict    string    `json:"verdict"`
	Reasons    []string  `json:"reasons,omitempty"`
	Suggestion string    `json:"suggestion,omitempty"`
	CheckedAt  time.Time `json:"checked_at"`
}

// VerifyFunc verifies addresses, one Verification per address in order
// (petreld adapts verify.Verifier.VerifyMany; audience does not import
// verify).
type VerifyFunc func(ctx context.Context, addrs []string) []Verification

// CleaningJob is a list-cleaning run and its counts.
type CleaningJob struct {
	ID         int64  `json:"id"`
	AudienceID int64  `json:"audience_id"`
	Segment    string `json:"segment,omitempty"`
	// OlderThan skips contacts verified more recently (re-verification);
	// 0 verifies every contact.
	OlderThan time.Duration `json:"-"`
	State     string        `json:"state"`
	Error     string        `json:"error,omitempty"`
	Checked   int64         `json:"checked"`
	// Skipped counts contacts not verified: not active or pending, or
	// verified within OlderThan.
	Skipped   int64     `json:"skipped"`
	Valid     int64     `json:"valid"`
	Risky     int64     `json:"risky"`
	Invalid   int64     `json:"invalid"`
	Unknown   int64     `json:"unknown"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CreateCleaning stores a list-cleaning job over the audience's contacts
// matching segment ("" = all).
func (s *Store) CreateCleaning(ctx context.Context, audience int64, segment string, olderThan time.Duration) (CleaningJob, error) {
	if segment != "" {
		if err := s.CheckExpression(ctx, audience, segment); err != nil {
			return CleaningJob{}, err
		}
	} else if _, err := s.Audience(ctx, audience); err != nil {
		return CleaningJob{}, err
	}
	if olderThan < 0 {
		return CleaningJob{}, invalid("invalid_request", "older_than must not be negative")
	}
	now := s.now()
	var id int64
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO cleaning_jobs (audience_id, segment, older_than, state, created_at, updated_at) VALUES (?,?,?,?,?,?) RETURNING id`),
		audience, segment, int64(olderThan/time.Second), ImportQueued, now, now).Scan(&id)
	if err != nil {
		return CleaningJob{}, fmt.Errorf("audience: cleaning job: %w", err)
	}
	return s.Cleaning(ctx, audience, id)
}

// Cleaning returns a list-cleaning job of an audience.
func (s *Store) Cleaning(ctx context.Context, audience, id int64) (CleaningJob, error) {
	var j CleaningJob
	var older, created, updated int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, audience_id, segment, older_than, state, error, checked, skipped, valid, risky, invalid, unknown, created_at, updated_at
		FROM cleaning_jobs WHERE id = ? AND audience_id = ?`), id, audience).
		Scan(&j.ID, &j.AudienceID, &j.Segment, &older, &j.State, &j.Error, &j.Checked, &j.Skipped, &j.Valid, &j.Risky, &j.Invalid, &j.Unknown, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return j, notFound("no cleaning job %d in audience %d", id, audience)
	}
	if err != nil {
		return j, fmt.Errorf("audience: cleaning job: %w", err)
	}
	j.OlderThan = time.Duration(older) * time.Second
	j.CreatedAt, j.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	return j, nil
}

// ContactVerification returns the stored verdict of a contact; ok is
// false when it was never verified.
func (s *Store) ContactVerification(ctx context.Context, audience, contact int64) (v Verification, ok bool, err error) {
	var reasons string
	var at int64
	err = s.db.QueryRowContext(ctx, s.q(`SELECT v.verdict, v.reasons, v.suggestion, v.checked_at FROM contact_verifications v JOIN contacts c ON c.id = v.contact_id
		WHERE c.audience_id = ? AND v.contact_id = ?`), audience, contact).Scan(&v.Verdict, &reasons, &v.Suggestion, &at)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.Contact(ctx, audience, contact); err != nil {
			return v, false, err
		}
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("audience: verification: %w", err)
	}
	if reasons != "" {
		v.Reasons = strings.Split(reasons, ",")
	}
	v.CheckedAt = time.Unix(at, 0).UTC()
	return v, true, nil
}

// cleaningPage is how many contacts one verification round and commit
// covers.
const cleaningPage = 100

// RunCleaning runs (or resumes) a list-cleaning job to its end with
// verifier. Each page of contacts, its verdicts, tags, counters and the
// job's cursor are one transaction, so a job stopped at any point
// resumes after its last committed page.
func (s *Store) RunCleaning(ctx context.Context, id int64, verifier VerifyFunc) error {
	var audience, cursor int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT audience_id, cursor_id FROM cleaning_jobs WHERE id = ?`), id).Scan(&audience, &cursor)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("no cleaning job %d", id)
	}
	if err != nil {
		return fmt.Errorf("audience: cleaning job %d: %w", id, err)
	}
	j, err := s.Cleaning(ctx, audience, id)
	if err != nil {
		return err
	}
	res, err := s.exec(ctx, s.db, `UPDATE cleaning_jobs SET state = ?, updated_at = ? WHERE id = ? AND state IN (?, ?)`, ImportRunning, s.now(), id, ImportQueued, ImportRunning)
	if err != nil {
		return fmt.Errorf("audience: cleaning job %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil // finished already
	}
	err = s.runCleaning(ctx, &j, cursor, verifier)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		if _, uerr := s.exec(context.WithoutCancel(ctx), s.db, `UPDATE cleaning_jobs SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state = ?`,
			ImportFailed, err.Error(), s.now(), id, ImportRunning); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	_, err = s.exec(ctx, s.db, `UPDATE cleaning_jobs SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, ImportDone, s.now(), id, ImportRunning)
	return err
}

func (s *Store) runCleaning(ctx context.Context, j *CleaningJob, cursor int64, verifier VerifyFunc) error {
	for {
		cs, next, err := s.ListContacts(ctx, j.AudienceID, ListOptions{Segment: j.Segment, After: cursor, Limit: cleaningPage})
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			return nil
		}
		todo, skipped, err := s.needVerification(ctx, cs, j.OlderThan)
		if err != nil {
			return err
		}
		addrs := make([]string, len(todo))
		for i, c := range todo {
			addrs[i] = c.Email
		}
		var vs []Verification
		if len(addrs) > 0 {
			vs = verifier(ctx, addrs)
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(vs) != len(addrs) {
				return fmt.Errorf("verifier returned %d results for %d addresses", len(vs), len(addrs))
			}
		}
		last := cs[len(cs)-1].ID
		err = s.commitCleaning(ctx, j.ID, cursor, last, todo, vs, skipped)
		if errors.Is(err, errJobMoved) {
			if qerr := s.db.QueryRowContext(ctx, s.q(`SELECT cursor_id FROM cleaning_jobs WHERE id = ?`), j.ID).Scan(&cursor); qerr != nil {
				return qerr
			}
			continue
		}
		if err != nil {
			return err
		}
		if s.opts.afterBatch != nil {
			s.opts.afterBatch()
		}
		cursor = last
		if next == 0 {
			return nil
		}
	}
}

// needVerification splits a page into the contacts to verify now and the
// number skipped (not active or pending, or verified within olderThan).
func (s *Store) needVerification(ctx context.Context, cs []Contact, olderThan time.Duration) ([]Contact, int64, error) {
	recent := map[int64]bool{}
	if olderThan > 0 {
		args := []any{s.opts.Now().Add(-olderThan).Unix()}
		for _, c := range cs {
			args = append(args, c.ID)
		}
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT contact_id FROM contact_verifications WHERE checked_at > ? AND contact_id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(cs)), ",")+`)`), args...)
		if err != nil {
			return nil, 0, fmt.Errorf("audience: cleaning: %w", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, 0, fmt.Errorf("audience: cleaning: %w", err)
			}
			recent[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, fmt.Errorf("audience: cleaning: %w", err)
		}
	}
	var todo []Contact
	var skipped int64
	for _, c := range cs {
		if (c.Status != Active && c.Status != Pending) || recent[c.ID] {
			skipped++
			continue
		}
		todo = append(todo, c)
	}
	return todo, skipped, nil
}

// commitCleaning stores one page's verdicts and tags and moves the job's
// cursor from from to to.
func (s *Store) commitCleaning(ctx context.Context, id, from, to int64, cs []Contact, vs []Verification, skipped int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE cleaning_jobs SET updated_at = ? WHERE id = ? AND cursor_id = ? AND state = ?`, s.now(), id, from, ImportRunning)
		if err != nil {
			return fmt.Errorf("audience: cleaning claim: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errJobMoved
		}
		now := s.now()
		counts := map[string]int64{}
		var tags []tagRow
		for i, c := range cs {
			v := vs[i]
			switch v.Verdict {
			case VerdictValid, VerdictRisky, VerdictInvalid:
			default:
				v.Verdict = VerdictUnknown
			}
			counts[v.Verdict]++
			if _, err := s.exec(ctx, tx, `INSERT INTO contact_verifications (contact_id, verdict, reasons, suggestion, checked_at) VALUES (?,?,?,?,?)
				ON CONFLICT (contact_id) DO UPDATE SET verdict = excluded.verdict, reasons = excluded.reasons, suggestion = excluded.suggestion, checked_at = excluded.checked_at`,
				c.ID, v.Verdict, strings.Join(v.Reasons, ","), v.Suggestion, now); err != nil {
				return fmt.Errorf("audience: cleaning: %w", err)
			}
			// A new verdict replaces the old one's tag.
			if _, err := s.exec(ctx, tx, `DELETE FROM contact_tags WHERE contact_id = ? AND tag IN (?, ?)`, c.ID, TagInvalid, TagRisky); err != nil {
				return fmt.Errorf("audience: cleaning: %w", err)
			}
			switch v.Verdict {
			case VerdictInvalid:
				tags = append(tags, tagRow{c.ID, TagInvalid})
			case VerdictRisky:
				tags = append(tags, tagRow{c.ID, TagRisky})
			}
		}
		added, err := s.insertTags(ctx, tx, tags)
		if err != nil {
			return err
		}
		if err := s.logTagChanges(ctx, tx, nil, added); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE cleaning_jobs SET cursor_id = ?, checked = checked + ?, skipped = skipped + ?, valid = valid + ?, risky = risky + ?, invalid = invalid + ?, unknown = unknown + ?, updated_at = ? WHERE id = ?`,
			to, int64(len(cs)), skipped, counts[VerdictValid], counts[VerdictRisky], counts[VerdictInvalid], counts[VerdictUnknown], now, id)
		return err
	})
}

// PendingCleanings returns the ids of list-cleaning jobs not finished.
func (s *Store) PendingCleanings(ctx context.Context) ([]int64, error) {
	return s.unfinished(ctx, "cleaning_jobs")
}

// startCleaning runs a cleaning job in the background unless it already
// runs in this process.
func (h *handler) startCleaning(id int64) {
	h.background("cleaning", id, func(ctx context.Context, id int64) error { return h.s.RunCleaning(ctx, id, h.o.Verify) })
}

// resumeCleanings starts the cleaning jobs a previous process left.
func (h *handler) resumeCleanings() {
	if h.o.Verify == nil {
		return
	}
	pending, err := h.s.PendingCleanings(h.o.Context)
	if err != nil {
		h.o.Logger.Error("audience: pending cleaning jobs", "err", err)
	}
	for _, id := range pending {
		h.startCleaning(id)
	}
}

// mountCleaning adds the list-cleaning routes:
//
//	POST /api/v1/audiences/{aid}/cleanings              start {segment, older_than} (202 and the job)
//	GET  /api/v1/audiences/{aid}/cleanings/{jid}        state and counts (checked, skipped, valid, risky, invalid, unknown)
//	GET  /api/v1/audiences/{aid}/contacts/{cid}/verification   the contact's last verdict
func (h *handler) mountCleaning(m *routeMux, p string) {
	m.HandleFunc("POST "+p+"/{aid}/cleanings", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Segment   string `json:"segment"`
			OlderThan string `json:"older_than"`
		}
		aid, _, err := ids(r, "")
		if err == nil {
			err = decode(w, r, &in)
		}
		var older time.Duration
		if err == nil && in.OlderThan != "" {
			if older, err = time.ParseDuration(in.OlderThan); err != nil {
				err = invalid("invalid_request", "older_than %q: want a duration like 720h", in.OlderThan)
			}
		}
		if err == nil && h.o.Verify == nil {
			httpapi.WriteError(w, http.StatusServiceUnavailable, "verification_unavailable", "address verification is not configured")
			return
		}
		var j CleaningJob
		if err == nil {
			j, err = h.s.CreateCleaning(r.Context(), aid, in.Segment, older)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.startCleaning(j.ID)
		w.Header().Set("Location", fmt.Sprintf("%s/%d/cleanings/%d", p, aid, j.ID))
		httpapi.WriteJSON(w, http.StatusAccepted, j)
	})
	m.HandleFunc("GET "+p+"/{aid}/cleanings/{jid}", func(w http.ResponseWriter, r *http.Request) {
		aid, jid, err := ids(r, "jid")
		var j CleaningJob
		if err == nil {
			j, err = h.s.Cleaning(r.Context(), aid, jid)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, j)
	})
	m.HandleFunc("GET "+p+"/{aid}/contacts/{cid}/verification", func(w http.ResponseWriter, r *http.Request) {
		aid, cid, err := ids(r, "cid")
		var v Verification
		var ok bool
		if err == nil {
			v, ok, err = h.s.ContactVerification(r.Context(), aid, cid)
		}
		if err == nil && !ok {
			err = notFound("contact %d was never verified", cid)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, v)
	})
}
