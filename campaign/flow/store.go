package flow

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Options tune a Service. The zero value is usable.
type Options struct {
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// PageSize is how many due timers one step of the runner processes in
	// one commit (default 500).
	PageSize int
	// FrequencyCap, when > 0, is the most flow messages a contact gets
	// per FrequencyWindow (default 24h) across all flows, counting the
	// contact's last campaign send too; a send over the cap waits until
	// the window allows it.
	FrequencyCap    int
	FrequencyWindow time.Duration
	// ScanInterval is how often date and not_opened triggers are
	// evaluated (default 15m).
	ScanInterval time.Duration
	// Webhooks posts webhook steps (default: a client with a 10s timeout).
	Webhooks *http.Client
	Logger   *slog.Logger
}

// Service keeps flows and runs them. It is safe for concurrent use; one
// Runner (Run) processes the runs.
type Service struct {
	aud   *audience.Store
	db    *sql.DB
	pg    bool
	tpl   *campaign.Templates
	sub   campaign.Submitter
	unsub func(stream, rcpt string) string
	opts  Options
	log   *slog.Logger

	wake  chan struct{}
	inbox *groupWriter

	mu    sync.Mutex
	cache map[string]*Flow              // id@version (versions never change)
	tpls  map[string]*campaign.Compiled // template call@version
}

// Errors of the store.
var (
	ErrNotFound       = errors.New("flow: no such flow")
	ErrUnknownContact = errors.New("flow: no contact with this address")
)

var migrations = [][]string{{
	`CREATE TABLE IF NOT EXISTS flows (id TEXT PRIMARY KEY, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE, created BIGINT NOT NULL, updated BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS flow_versions (flow_id TEXT NOT NULL, version BIGINT NOT NULL, body TEXT NOT NULL, created BIGINT NOT NULL, PRIMARY KEY (flow_id, version))`,
	`CREATE TABLE IF NOT EXISTS flow_runs (
		id {{id}},
		flow_id TEXT NOT NULL,
		version BIGINT NOT NULL,
		audience_id BIGINT NOT NULL,
		contact_id BIGINT NOT NULL,
		step INTEGER NOT NULL,
		state TEXT NOT NULL,
		wait_event TEXT NOT NULL DEFAULT '',
		vars TEXT NOT NULL DEFAULT '{}',
		started BIGINT NOT NULL,
		updated BIGINT NOT NULL,
		reason TEXT NOT NULL DEFAULT '')`,
	`CREATE INDEX IF NOT EXISTS flow_runs_contact ON flow_runs (contact_id, state)`,
	`CREATE INDEX IF NOT EXISTS flow_runs_flow ON flow_runs (flow_id, contact_id, id)`,
	`CREATE INDEX IF NOT EXISTS flow_runs_state ON flow_runs (flow_id, state, step)`,
	`CREATE TABLE IF NOT EXISTS flow_timers (id {{id}}, due_at BIGINT NOT NULL, run_id BIGINT NOT NULL, step INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS flow_timers_due ON flow_timers (due_at, id)`,
	`CREATE INDEX IF NOT EXISTS flow_timers_run ON flow_timers (run_id)`,
	`CREATE TABLE IF NOT EXISTS flow_inbox (id {{serial}}, audience_id BIGINT NOT NULL, contact_id BIGINT NOT NULL, name TEXT NOT NULL, props TEXT NOT NULL, at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS flow_journal (
		id {{id}},
		run_id BIGINT NOT NULL,
		flow_id TEXT NOT NULL,
		version BIGINT NOT NULL,
		step_id TEXT NOT NULL,
		contact_id BIGINT NOT NULL,
		email TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT '',
		at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS flow_journal_contact ON flow_journal (contact_id, id)`,
	`CREATE INDEX IF NOT EXISTS flow_journal_flow ON flow_journal (flow_id, kind, step_id)`,
	`CREATE INDEX IF NOT EXISTS flow_journal_sent ON flow_journal (contact_id, kind, at)`,
	`CREATE TABLE IF NOT EXISTS flow_cursors (name TEXT PRIMARY KEY, pos TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS flow_marks (flow_id TEXT NOT NULL, contact_id BIGINT NOT NULL, mark TEXT NOT NULL, PRIMARY KEY (flow_id, contact_id, mark))`,
	`CREATE TABLE IF NOT EXISTS flow_engagement (contact_id BIGINT NOT NULL, campaign TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS flow_engagement_contact ON flow_engagement (contact_id, kind, at)`,
}}

// New creates the flow tables in aud's database (versioned migrations,
// SQLite and PostgreSQL). Sends go through sub (ingest's entry point),
// templates come from tpl; unsub gives a recipient's %unsubscribe_url%.
func New(ctx context.Context, aud *audience.Store, tpl *campaign.Templates, sub campaign.Submitter, unsub func(stream, rcpt string) string, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	if opts.FrequencyWindow <= 0 {
		opts.FrequencyWindow = 24 * time.Hour
	}
	if opts.ScanInterval <= 0 {
		opts.ScanInterval = 15 * time.Minute
	}
	if opts.Webhooks == nil {
		opts.Webhooks = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{aud: aud, db: aud.DB(), pg: aud.Postgres(), tpl: tpl, sub: sub, unsub: unsub, opts: opts, log: opts.Logger,
		wake: make(chan struct{}, 1), cache: map[string]*Flow{}, tpls: map[string]*campaign.Compiled{}}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	s.inbox = newGroupWriter(s)
	return s, nil
}

func (s *Service) expand(q string) string {
	// {{serial}}: ids never reused after deletes (cursors stay valid).
	if s.pg {
		q = strings.ReplaceAll(q, "{{serial}}", "{{id}}")
		return strings.ReplaceAll(q, "{{id}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
	}
	q = strings.ReplaceAll(q, "{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT")
	return strings.ReplaceAll(q, "{{id}}", "INTEGER PRIMARY KEY")
}

func (s *Service) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS flow_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("flow: migrate: %w", err)
	}
	var cur int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM flow_schema`).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = s.db.ExecContext(ctx, `INSERT INTO flow_schema (version) VALUES (0)`)
	}
	if err != nil {
		return fmt.Errorf("flow: migrate: %w", err)
	}
	for v := cur; v < len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			for _, q := range migrations[v] {
				if _, err := tx.ExecContext(ctx, s.expand(q)); err != nil {
					return fmt.Errorf("flow: migration %d: %w", v+1, err)
				}
			}
			_, err := tx.ExecContext(ctx, s.q(`UPDATE flow_schema SET version = ?`), v+1)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// q rewrites ? placeholders as $n on PostgreSQL.
func (s *Service) q(query string) string { return sqlq.Rebind(s.pg, query) }

func (s *Service) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flow: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that made us roll back is the one to report
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flow: commit: %w", err)
	}
	return nil
}

// defaultFields are the contact fields every audience has.
var defaultFields = []string{"email", "name", "first_name", "phone", "gender", "birthday", "age", "time_zone", "locale"}

// Check validates f against the database: the audience, every field a
// step or condition names, segment expressions, every template (which
// must exist; its version is pinned into the step) and the placeholders
// the templates use (contact fields, unsubscribe_url, or event.NAME).
func (s *Service) Check(ctx context.Context, f *Flow) error {
	if err := f.checkShape(); err != nil {
		return err
	}
	if _, err := mail.ParseAddress(f.From); err != nil {
		return invalid("", "from %q: %v", f.From, err)
	}
	if f.stream() == "marketing" && (s.unsub == nil || s.unsub("marketing", f.From) == "") {
		return invalid("", "marketing mail needs an unsubscribe link: set [sending] unsubscribe_url (or [bounce] domain for the mailto form)")
	}
	if f.AudienceName != "" {
		as, err := s.aud.Audiences(ctx)
		if err != nil {
			return err
		}
		f.Audience = 0
		for _, a := range as {
			if a.Name == f.AudienceName {
				f.Audience = a.ID
			}
		}
		if f.Audience == 0 {
			return invalid("", "no audience named %q", f.AudienceName)
		}
	}
	a, err := s.aud.Audience(ctx, f.Audience)
	if err != nil {
		return invalid("", "audience %d: %v", f.Audience, err)
	}
	fields := map[string]audience.FieldType{}
	for _, n := range defaultFields {
		fields[n] = ""
	}
	for _, fd := range a.Fields {
		fields[fd.Name] = fd.Type
	}
	if f.Trigger.Type == TriggerDate {
		t, ok := fields[f.Trigger.Field]
		if !ok || (f.Trigger.Field != "birthday" && t != audience.Date && t != audience.DateTime) {
			return invalid("", "trigger field %q is not a date field of audience %s", f.Trigger.Field, a.Name)
		}
	}
	for i := range f.Steps {
		st := &f.Steps[i]
		switch st.Type {
		case StepSend:
			tp, err := s.tpl.Get(ctx, st.Template, 0)
			if errors.Is(err, campaign.ErrUnknownTemplate) {
				return invalid(st.ID, "unknown template %q", st.Template)
			}
			if err != nil {
				return err
			}
			st.TemplateVersion = tp.Version
			for _, v := range tp.Variables {
				if _, ok := fields[v]; !ok && !strings.HasPrefix(v, "event.") {
					return invalid(st.ID, "template %s uses %%%s%%, which is no field of audience %s (nor event.NAME)", st.Template, v, a.Name)
				}
			}
			if f.stream() == "marketing" && !strings.Contains(tp.HTML+tp.Text, "%unsubscribe_url%") {
				return invalid(st.ID, "template %s is sent on the marketing stream and has no %%unsubscribe_url%%", st.Template)
			}
		case StepField:
			if st.Field == "email" {
				return invalid(st.ID, "the email cannot be updated by a flow")
			}
			if _, ok := fields[st.Field]; !ok || slices.Contains(defaultFields, st.Field) {
				return invalid(st.ID, "unknown field %q (update_field sets a custom field of audience %s)", st.Field, a.Name)
			}
		case StepCondition:
			c := st.If
			if c.SavedSegment != "" {
				segs, err := s.aud.Segments(ctx, a.ID)
				if err != nil {
					return err
				}
				found := false
				for _, sg := range segs {
					found = found || sg.Name == c.SavedSegment
				}
				if !found {
					return invalid(st.ID, "no saved segment %q in audience %s", c.SavedSegment, a.Name)
				}
			}
			if c.Segment != "" {
				if err := s.aud.CheckExpression(ctx, a.ID, c.Segment); err != nil {
					return invalid(st.ID, "segment: %v", err)
				}
			}
		}
	}
	return nil
}

// Save validates f and stores it as the flow's next version, which it
// returns. Runs already in the flow finish on the version they started
// on; new entries take this one.
func (s *Service) Save(ctx context.Context, f Flow) (Flow, error) {
	if err := s.Check(ctx, &f); err != nil {
		return Flow{}, err
	}
	now := s.opts.Now().UTC().Truncate(time.Second)
	f.Created = now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var last int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM flows WHERE id = ?`), f.ID).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("flow: save: %w", err)
		}
		f.Version = last + 1
		body, _ := json.Marshal(f)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO flow_versions (flow_id, version, body, created) VALUES (?, ?, ?, ?)`), f.ID, f.Version, string(body), now.Unix()); err != nil {
			return fmt.Errorf("flow: save: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO flows (id, version, deleted, created, updated) VALUES (?, ?, FALSE, ?, ?)
			ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = FALSE, updated = excluded.updated`), f.ID, f.Version, now.Unix(), now.Unix()); err != nil {
			return fmt.Errorf("flow: save: %w", err)
		}
		return nil
	})
	if err != nil {
		return Flow{}, err
	}
	return f, nil
}

// Get returns version v of a flow (0: the current one).
func (s *Service) Get(ctx context.Context, id string, v int64) (Flow, error) {
	if v == 0 {
		var deleted bool
		err := s.db.QueryRowContext(ctx, s.q(`SELECT version, deleted FROM flows WHERE id = ?`), id).Scan(&v, &deleted)
		if errors.Is(err, sql.ErrNoRows) || deleted {
			return Flow{}, ErrNotFound
		}
		if err != nil {
			return Flow{}, fmt.Errorf("flow: get: %w", err)
		}
	}
	f, err := s.version(ctx, id, v)
	if err != nil {
		return Flow{}, err
	}
	return *f, nil
}

// querier is the pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// version returns a flow version, cached (versions never change).
func (s *Service) version(ctx context.Context, id string, v int64) (*Flow, error) {
	return s.versionOn(ctx, s.db, id, v)
}

// versionOn is version reading through db: a transaction reads through
// itself. On SQLite, a write transaction that waited for another pool
// connection could wait for ever: the others may all be taken by writers
// waiting for its lock (they fail after busy_timeout, SQLITE_BUSY).
func (s *Service) versionOn(ctx context.Context, db querier, id string, v int64) (*Flow, error) {
	key := fmt.Sprintf("%s@%d", id, v)
	s.mu.Lock()
	f := s.cache[key]
	s.mu.Unlock()
	if f != nil {
		return f, nil
	}
	var body string
	err := db.QueryRowContext(ctx, s.q(`SELECT body FROM flow_versions WHERE flow_id = ? AND version = ?`), id, v).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("flow: get: %w", err)
	}
	f = &Flow{}
	if err := json.Unmarshal([]byte(body), f); err != nil {
		return nil, fmt.Errorf("flow: corrupt flow %s: %w", key, err)
	}
	s.mu.Lock()
	s.cache[key] = f
	s.mu.Unlock()
	return f, nil
}

// Versions lists every version of a flow, oldest first.
func (s *Service) Versions(ctx context.Context, id string) ([]Flow, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT version FROM flow_versions WHERE flow_id = ? ORDER BY version`), id)
	if err != nil {
		return nil, fmt.Errorf("flow: versions: %w", err)
	}
	vs, err := scanInts(rows)
	if err != nil {
		return nil, err
	}
	var out []Flow
	for _, v := range vs {
		f, err := s.version(ctx, id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, *f)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// List returns the current version of every flow, by id.
func (s *Service) List(ctx context.Context) ([]Flow, error) { return s.listOn(ctx, s.db) }

// listOn is List reading through db (see versionOn).
func (s *Service) listOn(ctx context.Context, db querier) ([]Flow, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, version FROM flows WHERE deleted = FALSE ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("flow: list: %w", err)
	}
	type iv struct {
		id string
		v  int64
	}
	var ids []iv
	for rows.Next() {
		var x iv
		if err := rows.Scan(&x.id, &x.v); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Flow, 0, len(ids))
	for _, x := range ids {
		f, err := s.versionOn(ctx, db, x.id, x.v)
		if err != nil {
			return nil, err
		}
		out = append(out, *f)
	}
	return out, nil
}

// Delete removes a flow: it takes no new contacts and the runs in it end
// (reason "flow_deleted") when they next move. Its versions and journal
// stay.
func (s *Service) Delete(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE flows SET deleted = TRUE, updated = ? WHERE id = ? AND deleted = FALSE`), s.opts.Now().Unix(), id)
	if err != nil {
		return fmt.Errorf("flow: delete: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *Service) isDeleted(ctx context.Context, id string) (bool, error) {
	var deleted bool
	err := s.db.QueryRowContext(ctx, s.q(`SELECT deleted FROM flows WHERE id = ?`), id).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return deleted, err
}

func scanInts(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *Service) cursor(ctx context.Context, name string) (string, error) {
	var pos string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT pos FROM flow_cursors WHERE name = ?`), name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return pos, err
}

func (s *Service) setCursor(ctx context.Context, tx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}, name, pos string) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO flow_cursors (name, pos) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`), name, pos)
	return err
}
