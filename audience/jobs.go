package audience

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Bulk upsert jobs: PUT .../contacts with more than maxBulk contacts is
// stored whole (the request's contacts, as JSON, in the job row) in one
// transaction before the 202 answer, and written in the background in
// batches; each batch's contacts, its row errors and the job's position
// and counters are one transaction, so a job interrupted by a crash
// resumes after its last committed batch (petreld resumes jobs at
// start), and one that cannot finish ends failed with its error.

var jobsPart = schemaPart{name: "contact_jobs", stmts: []string{
	`CREATE TABLE contact_jobs (
		id {{id}},
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		on_duplicate TEXT NOT NULL,
		tags TEXT NOT NULL,
		payload {{json}} NOT NULL,
		total BIGINT NOT NULL,
		next_index BIGINT NOT NULL DEFAULT 0,
		created BIGINT NOT NULL DEFAULT 0,
		updated BIGINT NOT NULL DEFAULT 0,
		skipped BIGINT NOT NULL DEFAULT 0,
		failed BIGINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL)`,
	`CREATE TABLE contact_job_errors (
		job_id BIGINT NOT NULL REFERENCES contact_jobs(id) ON DELETE CASCADE,
		idx BIGINT NOT NULL,
		col TEXT NOT NULL,
		reason TEXT NOT NULL,
		PRIMARY KEY (job_id, idx))`,
}}

// ContactJob is an asynchronous bulk upsert and its progress.
type ContactJob struct {
	ID          int64       `json:"id"`
	AudienceID  int64       `json:"audience_id"`
	State       string      `json:"state"` // queued, running, done, failed (the import states)
	Error       string      `json:"error,omitempty"`
	OnDuplicate OnDuplicate `json:"on_duplicate"`
	Tags        TagMode     `json:"tags"`
	Total       int64       `json:"total"`
	Processed   int64       `json:"processed"`
	Created     int64       `json:"created"`
	Updated     int64       `json:"updated"`
	Skipped     int64       `json:"skipped"`
	Failed      int64       `json:"failed"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// ContactJobError is one failed row of a bulk job: its index in the
// request's contacts array.
type ContactJobError struct {
	Index  int64  `json:"index"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason"`
}

// CreateContactJob stores a bulk upsert to run in the background
// (RunContactJob) and returns it queued.
func (s *Store) CreateContactJob(ctx context.Context, audience int64, ins []ContactInput, dup OnDuplicate, tags TagMode) (ContactJob, error) {
	o := ImportOptions{OnDuplicate: dup, Tags: tags}
	if err := o.check(); err != nil {
		return ContactJob{}, err
	}
	if _, err := s.Audience(ctx, audience); err != nil {
		return ContactJob{}, err
	}
	payload, err := json.Marshal(ins)
	if err != nil {
		return ContactJob{}, fmt.Errorf("audience: contact job: %w", err)
	}
	now := s.now()
	val := "?"
	if s.d == sqlite {
		val = "jsonb(?)"
	}
	var id int64
	err = s.db.QueryRowContext(ctx, s.q(`INSERT INTO contact_jobs (audience_id, state, on_duplicate, tags, payload, total, created_at, updated_at)
		VALUES (?,?,?,?,`+val+`,?,?,?) RETURNING id`), audience, ImportQueued, string(o.OnDuplicate), string(o.Tags), string(payload), len(ins), now, now).Scan(&id)
	if err != nil {
		return ContactJob{}, fmt.Errorf("audience: contact job: %w", err)
	}
	return s.ContactJob(ctx, audience, id)
}

// ContactJob returns a bulk job of an audience.
func (s *Store) ContactJob(ctx context.Context, audience, id int64) (ContactJob, error) {
	var j ContactJob
	var created, updated int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, audience_id, state, error, on_duplicate, tags, total, next_index, created, updated, skipped, failed, created_at, updated_at
		FROM contact_jobs WHERE id = ? AND audience_id = ?`), id, audience).
		Scan(&j.ID, &j.AudienceID, &j.State, &j.Error, &j.OnDuplicate, &j.Tags, &j.Total, &j.Processed, &j.Created, &j.Updated, &j.Skipped, &j.Failed, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return j, notFound("no contact job %d in audience %d", id, audience)
	}
	if err != nil {
		return j, fmt.Errorf("audience: contact job: %w", err)
	}
	j.CreatedAt, j.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	return j, nil
}

// ContactJobErrors returns a job's failed rows after index after, at
// most limit (default 1000).
func (s *Store) ContactJobErrors(ctx context.Context, id, after int64, limit int) ([]ContactJobError, error) {
	return rowErrors(ctx, s, "contact job errors", `SELECT idx, col, reason FROM contact_job_errors WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?`,
		id, after, limit, func(pos int64, col, reason string) ContactJobError {
			return ContactJobError{Index: pos, Column: col, Reason: reason}
		})
}

// PendingContactJobs returns the ids of bulk jobs not finished.
func (s *Store) PendingContactJobs(ctx context.Context) ([]int64, error) {
	return s.unfinished(ctx, "contact_jobs")
}

// unfinished returns the ids of a job table's queued or running jobs
// (imports, contact_jobs, cleaning_jobs), oldest first.
func (s *Store) unfinished(ctx context.Context, table string) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id FROM `+table+` WHERE state IN (?, ?) ORDER BY id`), ImportQueued, ImportRunning)
	if err != nil {
		return nil, fmt.Errorf("audience: pending %s: %w", table, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// errJobMoved: the job's stored position is not where this runner left
// it (another runner committed the batch).
var errJobMoved = errors.New("contact job advanced by another runner")

// RunContactJob runs (or resumes) a bulk job to its end.
func (s *Store) RunContactJob(ctx context.Context, id int64) error {
	var (
		audience   int64
		state      string
		dup, tags  string
		payload    []byte
		next       int64
		payloadSel = "payload"
	)
	if s.d == sqlite {
		payloadSel = "json(payload)"
	}
	err := s.db.QueryRowContext(ctx, s.q(`SELECT audience_id, state, on_duplicate, tags, `+payloadSel+`, next_index FROM contact_jobs WHERE id = ?`), id).
		Scan(&audience, &state, &dup, &tags, &payload, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("no contact job %d", id)
	}
	if err != nil {
		return fmt.Errorf("audience: contact job %d: %w", id, err)
	}
	if state == ImportDone || state == ImportFailed {
		return nil
	}
	res, err := s.exec(ctx, s.db, `UPDATE contact_jobs SET state = ?, updated_at = ? WHERE id = ? AND state IN (?, ?)`, ImportRunning, s.now(), id, ImportQueued, ImportRunning)
	if err != nil {
		return fmt.Errorf("audience: contact job %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil
	}
	err = s.runContactJob(ctx, id, audience, OnDuplicate(dup), TagMode(tags), payload, next)
	if err != nil {
		if ctx.Err() != nil {
			return err // stopped, not failed: resumes later
		}
		if _, uerr := s.exec(context.WithoutCancel(ctx), s.db, `UPDATE contact_jobs SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state = ?`,
			ImportFailed, err.Error(), s.now(), id, ImportRunning); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	_, err = s.exec(ctx, s.db, `UPDATE contact_jobs SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, ImportDone, s.now(), id, ImportRunning)
	return err
}

func (s *Store) runContactJob(ctx context.Context, id, audience int64, dup OnDuplicate, tags TagMode, payload []byte, next int64) error {
	var ins []ContactInput
	if err := json.Unmarshal(payload, &ins); err != nil {
		return fmt.Errorf("contact job payload: %w", err)
	}
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return err
	}
	batch := int64(s.opts.BatchSize)
	for next < int64(len(ins)) {
		end := min(next+batch, int64(len(ins)))
		err := s.commitJobBatch(ctx, id, &a, dup, tags, ins[next:end], next)
		if errors.Is(err, errJobMoved) {
			var state string
			if qerr := s.db.QueryRowContext(ctx, s.q(`SELECT state, next_index FROM contact_jobs WHERE id = ?`), id).Scan(&state, &next); qerr != nil {
				return qerr
			}
			if state != ImportRunning {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		next = end
		if s.opts.afterBatch != nil {
			s.opts.afterBatch()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// commitJobBatch writes ins (starting at index from of the job) with
// their errors and the job's new position in one transaction.
func (s *Store) commitJobBatch(ctx context.Context, id int64, a *Audience, dup OnDuplicate, tags TagMode, ins []ContactInput, from int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE contact_jobs SET updated_at = ? WHERE id = ? AND next_index = ? AND state = ?`, s.now(), id, from, ImportRunning)
		if err != nil {
			return fmt.Errorf("audience: contact job claim: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errJobMoved
		}
		var errs []ContactJobError
		var rows []row
		var idx []int64
		for i := range ins {
			r, err := a.validate(&ins[i])
			if err != nil {
				fr := failedRow(err)
				errs = append(errs, ContactJobError{Index: from + int64(i), Column: fr.Column, Reason: fr.Reason})
				continue
			}
			rows = append(rows, r)
			idx = append(idx, from+int64(i))
		}
		results, err := s.upsert(ctx, tx, a, rows, dup, tags)
		if err != nil {
			return err
		}
		var created, updated, skipped int64
		for j, r := range results {
			switch r.Outcome {
			case Created:
				created++
			case Updated:
				updated++
			case Skipped:
				skipped++
			case Failed:
				errs = append(errs, ContactJobError{Index: idx[j], Column: r.Column, Reason: r.Reason})
			}
		}
		for _, e := range errs {
			if _, err := s.exec(ctx, tx, `INSERT INTO contact_job_errors (job_id, idx, col, reason) VALUES (?,?,?,?)`, id, e.Index, e.Column, e.Reason); err != nil {
				return fmt.Errorf("audience: contact job errors: %w", err)
			}
		}
		_, err = s.exec(ctx, tx, `UPDATE contact_jobs SET next_index = ?, created = created + ?, updated = updated + ?, skipped = skipped + ?, failed = failed + ?, updated_at = ? WHERE id = ?`,
			from+int64(len(ins)), created, updated, skipped, int64(len(errs)), s.now(), id)
		return err
	})
}

// startContactJob runs a bulk job in the background unless it already
// runs in this process.
func (h *handler) startContactJob(id int64) {
	h.background("contacts", id, h.s.RunContactJob)
}

// resumeContactJobs starts the bulk jobs a previous process left.
func (h *handler) resumeContactJobs() {
	pending, err := h.s.PendingContactJobs(h.o.Context)
	if err != nil {
		h.o.Logger.Error("audience: pending contact jobs", "err", err)
	}
	for _, id := range pending {
		h.startContactJob(id)
	}
}

// bulkJob answers a bulk upsert too large to run in the request: 202 and
// the job.
func (h *handler) bulkJob(w http.ResponseWriter, r *http.Request, aid int64, ins []ContactInput, dup OnDuplicate, tags TagMode) {
	j, err := h.s.CreateContactJob(r.Context(), aid, ins, dup, tags)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.startContactJob(j.ID)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/audiences/%d/jobs/%d", aid, j.ID))
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"job_id": j.ID, "job": j})
}

// mountJobs adds the bulk job routes:
//
//	GET /api/v1/audiences/{aid}/jobs/{jid}          state and counters
//	GET /api/v1/audiences/{aid}/jobs/{jid}/errors   failed rows (?after=INDEX&limit=N)
func (h *handler) mountJobs(m *routeMux, p string) {
	m.HandleFunc("GET "+p+"/{aid}/jobs/{jid}", func(w http.ResponseWriter, r *http.Request) {
		aid, jid, err := ids(r, "jid")
		var j ContactJob
		if err == nil {
			j, err = h.s.ContactJob(r.Context(), aid, jid)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, j)
	})
	m.HandleFunc("GET "+p+"/{aid}/jobs/{jid}/errors", func(w http.ResponseWriter, r *http.Request) {
		aid, jid, err := ids(r, "jid")
		if err == nil {
			_, err = h.s.ContactJob(r.Context(), aid, jid)
		}
		after, limit := int64(-1), int64(1000)
		if err == nil {
			after, err = queryInt(r, "after", -1)
		}
		if err == nil {
			limit, err = queryInt(r, "limit", 1000)
		}
		var errs []ContactJobError
		if err == nil {
			errs, err = h.s.ContactJobErrors(r.Context(), jid, after, int(limit))
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"errors": errs})
	})
}
