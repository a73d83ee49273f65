// Package audience is Petrel's first ESP package: contacts keyed by
// normalised email with default and typed custom fields, tags, audiences
// (lists) with an opt-in mode, segments (saved CEL expressions evaluated
// when used), resumable CSV import jobs, and an append-only consent ledger
// with export and erasure.
//
// Its data lives in its own SQL database, never in the spool: embedded
// SQLite (modernc.org/sqlite, pure Go) by default, PostgreSQL (jackc/pgx/v5
// through database/sql) when [esp] database is a postgres:// URL. One
// schema, versioned migrations run by Open; the few dialect differences
// (identity columns, JSONB on both but through different functions, JSON
// merge and extraction, placeholder syntax) are handled explicitly by
// dialect.
//
// Custom field values are stored in one JSON column (JSONB on PostgreSQL)
// per contact; date and datetime values are stored as Unix seconds so that
// segment comparisons translate to plain numeric SQL.
package audience

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Store is the audience database. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	d       dialect
	opts    Options
	erasure []byte // key of the erasure hashes

	stmtMu      sync.Mutex
	stmts       map[string]*sql.Stmt // SQLite: prepared bulk statements by text
	preparing   map[string]bool      // texts being prepared in the background
	stmtsClosed bool                 // set by Close: no more statements are cached
}

// Options tune a Store. The zero value is usable.
type Options struct {
	// ImportDir holds uploaded CSV files of import jobs until they finish.
	// "" means imports must be given a path the store can reopen.
	ImportDir string
	// BatchSize is the number of CSV rows committed per transaction
	// (default 1000).
	BatchSize int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time

	// afterBatch, when set, runs after each committed import batch (tests
	// slow an import down with it to kill it mid-way).
	afterBatch func()
}

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// IsPostgres reports whether dsn selects the PostgreSQL backend.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens (creating if needed) the database named by dsn and runs the
// pending migrations. A postgres:// or postgresql:// URL selects
// PostgreSQL; anything else is the path of an SQLite database file.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{opts: opts}
	var err error
	if IsPostgres(dsn) {
		s.d = postgres
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			s.db.SetMaxOpenConns(16)
		}
	} else {
		s.d = sqlite
		// WAL lets readers run beside the one writer (synchronous FULL: a
		// committed transaction survives power loss, not only kill -9); IMMEDIATE write
		// transactions take the write lock up front so two writers queue
		// on busy_timeout instead of failing to upgrade a read lock. The
		// page cache is 32 MiB per connection (default 2 MiB).
		s.db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-32768)&_pragma=foreign_keys(1)&_txlock=immediate")
		if err == nil {
			s.db.SetMaxOpenConns(4)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audience: open: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("audience: open: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := s.migrateParts(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := s.changeSchema(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := s.loadErasureKey(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// DB is the ESP database, for the other ESP packages' own tables (the
// campaign engine's progress); Postgres reports its dialect.
func (s *Store) DB() *sql.DB { return s.db }

// Postgres reports whether the store is on PostgreSQL ($n placeholders).
func (s *Store) Postgres() bool { return s.d == postgres }

// Close closes the database.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts, s.stmtsClosed = nil, true
	s.stmtMu.Unlock()
	return s.db.Close()
}

// maxCachedStmts bounds the prepared-statement cache (bulk statements
// differ only by their row count, and batches have few sizes).
const maxCachedStmts = 64

// prepared returns query (with ? placeholders) prepared for tx. On SQLite
// the statement is kept and reused: a 1,000-row upsert spends about a
// tenth of its CPU in the SQL parser otherwise. pgx caches prepared
// statements by itself, so PostgreSQL gets the plain query (nil).
func (s *Store) prepared(ctx context.Context, db dbtx, query string) *sql.Stmt {
	tx, ok := db.(*sql.Tx)
	if !ok || s.d != sqlite {
		return nil
	}
	s.stmtMu.Lock()
	st := s.stmts[query]
	if st == nil && !s.stmtsClosed && !s.preparing[query] && len(s.stmts)+len(s.preparing) < maxCachedStmts {
		// Prepared on the pool in the background, never here: the
		// caller's transaction holds the write lock, and waiting for a
		// second pool connection could wait for ever (the others may all
		// be writers waiting for that lock, until busy_timeout gives them
		// SQLITE_BUSY). This use runs the plain query on the transaction.
		if s.preparing == nil {
			s.preparing = map[string]bool{}
		}
		s.preparing[query] = true
		go s.prepareInBackground(query)
	}
	s.stmtMu.Unlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

// prepareInBackground prepares query on the pool for the statement cache.
func (s *Store) prepareInBackground(query string) {
	st, err := s.db.PrepareContext(context.Background(), query)
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	delete(s.preparing, query)
	if err != nil {
		return // the plain query reports the error
	}
	if s.stmtsClosed {
		st.Close()
		return
	}
	if s.stmts == nil {
		s.stmts = map[string]*sql.Stmt{}
	}
	s.stmts[query] = st
}

// bulkQuery runs a bulk query through the statement cache.
func (s *Store) bulkQuery(ctx context.Context, db dbtx, query string, args ...any) (*sql.Rows, error) {
	if st := s.prepared(ctx, db, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.QueryContext(ctx, s.q(query), args...)
}

// bulkExec runs a bulk statement through the statement cache.
func (s *Store) bulkExec(ctx context.Context, db dbtx, query string, args ...any) (sql.Result, error) {
	if st := s.prepared(ctx, db, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return db.ExecContext(ctx, s.q(query), args...)
}

// Backend names the SQL backend: "sqlite" or "postgres".
func (s *Store) Backend() string {
	if s.d == postgres {
		return "postgres"
	}
	return "sqlite"
}

// q rewrites a query written with ? placeholders for the dialect.
func (s *Store) q(query string) string { return sqlq.Rebind(s.d == postgres, query) }

func (s *Store) exec(ctx context.Context, tx dbtx, query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.q(query), args...)
}

// dbtx is what *sql.DB and *sql.Tx share.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.txOn(ctx, s.db, fn)
}

// txOn is tx on a given pool or connection.
func (s *Store) txOn(ctx context.Context, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audience: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that made us roll back is the one to report
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audience: commit: %w", err)
	}
	return nil
}

// migration is one schema version. Its SQL uses the placeholders {{id}}
// (an auto-assigned 64-bit primary key) and {{json}} (TEXT or JSONB),
// expanded per dialect.
type migration struct {
	version int
	stmts   []string
}

var migrations = []migration{{version: 1, stmts: []string{
	`CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
	`CREATE TABLE audiences (
		id {{id}},
		name TEXT NOT NULL UNIQUE,
		double_opt_in BOOLEAN NOT NULL DEFAULT FALSE,
		created_at BIGINT NOT NULL)`,
	`CREATE TABLE fields (
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		type TEXT NOT NULL,
		enum_values TEXT NOT NULL DEFAULT '',
		position INTEGER NOT NULL,
		PRIMARY KEY (audience_id, name))`,
	`CREATE TABLE contacts (
		id {{id}},
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		email TEXT NOT NULL,
		email_key TEXT NOT NULL,
		status TEXT NOT NULL DEFAULT 'active',
		name TEXT, phone TEXT, gender TEXT, birthday BIGINT, age INTEGER,
		time_zone TEXT, locale TEXT,
		fields {{json}} NOT NULL DEFAULT '{}',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		last_sent BIGINT, last_opened BIGINT, last_clicked BIGINT,
		UNIQUE (audience_id, email_key))`,
	`CREATE INDEX contacts_status ON contacts (audience_id, status)`,
	`CREATE TABLE contact_tags (
		contact_id BIGINT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
		tag TEXT NOT NULL,
		PRIMARY KEY (contact_id, tag))`,
	`CREATE INDEX contact_tags_tag ON contact_tags (tag, contact_id)`,
	`CREATE TABLE segments (
		id {{id}},
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		expression TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		UNIQUE (audience_id, name))`,
	`CREATE TABLE consent (
		id {{id}},
		contact_id BIGINT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
		purpose TEXT NOT NULL,
		action TEXT NOT NULL,
		at BIGINT NOT NULL,
		source TEXT NOT NULL,
		ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		text_version TEXT NOT NULL DEFAULT '')`,
	`CREATE INDEX consent_contact ON consent (contact_id, purpose, id)`,
	`CREATE TABLE erased (hash TEXT PRIMARY KEY, at BIGINT NOT NULL)`,
	`CREATE TABLE imports (
		id {{id}},
		audience_id BIGINT NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
		path TEXT NOT NULL,
		options {{json}} NOT NULL,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		header TEXT NOT NULL DEFAULT '',
		size BIGINT NOT NULL DEFAULT 0,
		byte_offset BIGINT NOT NULL DEFAULT 0,
		line BIGINT NOT NULL DEFAULT 0,
		rows_read BIGINT NOT NULL DEFAULT 0,
		created BIGINT NOT NULL DEFAULT 0,
		updated BIGINT NOT NULL DEFAULT 0,
		skipped BIGINT NOT NULL DEFAULT 0,
		failed BIGINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL)`,
	`CREATE TABLE import_errors (
		import_id BIGINT NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
		line BIGINT NOT NULL,
		col TEXT NOT NULL,
		reason TEXT NOT NULL,
		PRIMARY KEY (import_id, line, col))`,
}}}

func (s *Store) expand(stmt string) string {
	if s.d == postgres {
		stmt = strings.ReplaceAll(stmt, "{{id}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
		return strings.ReplaceAll(stmt, "{{json}}", "JSONB")
	}
	stmt = strings.ReplaceAll(stmt, "{{id}}", "INTEGER PRIMARY KEY")
	return strings.ReplaceAll(stmt, "{{json}}", "BLOB") // JSON text or JSONB; no affinity
}

// migrate applies every migration newer than the recorded version, each in
// one transaction with its version bump.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("audience: migrate: %w", err)
	}
	var cur int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("audience: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("audience: migrate: %w", err)
	}
	for _, m := range migrations {
		if m.version <= cur {
			continue
		}
		err := s.tx(ctx, func(tx *sql.Tx) error {
			for _, st := range m.stmts {
				if _, err := tx.ExecContext(ctx, s.expand(st)); err != nil {
					return fmt.Errorf("audience: migration %d: %w", m.version, err)
				}
			}
			_, err := s.exec(ctx, tx, `UPDATE schema_version SET version = ?`, m.version)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion returns the schema version the database is at.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	return v, err
}

func (s *Store) now() int64 { return s.opts.Now().Unix() }
