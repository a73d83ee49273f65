package audience

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// schemaPart is a named schema addition, applied once per database (its
// name is recorded in meta as "part:NAME") in one transaction after the
// versioned migrations. Features added beside the core schema (double
// opt-in, bulk jobs, list cleaning) keep their tables here so that their
// additions do not compete with the core's version numbers.
type schemaPart struct {
	name  string
	stmts []string
	// sqlite and postgres are statements for one dialect only (triggers),
	// run after stmts.
	sqlite, postgres []string
	// fn, when set, runs last in the part's transaction.
	fn func(ctx context.Context, s *Store, tx *sql.Tx) error
}

var schemaParts = []schemaPart{optInPart, jobsPart, cleaningPart, emailKeyPart, slotsPart, keyIndexPart}

// emailKeyPart indexes contacts by address across audiences: the event
// followers (suppressions, last_sent) update every contact of an address.
var emailKeyPart = schemaPart{name: "contacts_email_key", stmts: []string{
	`CREATE INDEX IF NOT EXISTS contacts_email_key ON contacts (email_key)`,
}}

// keyIndexPart makes PostgreSQL's unique index on contacts (email_key,
// audience_id), which serves the upsert's conflict target (an index of
// the same columns in any order), the per-audience lookups and the
// address-wide ones, in place of two indexes: the UNIQUE (audience_id,
// email_key) constraint and contacts_email_key. One index fewer to
// update per imported contact. SQLite cannot drop a table constraint's
// index without rebuilding the table and keeps both.
var keyIndexPart = schemaPart{name: "contacts_key_index", fn: func(ctx context.Context, s *Store, tx *sql.Tx) error {
	if s.d != postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS contacts_key_audience ON contacts (email_key, audience_id)`); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = 'contacts'::regclass AND contype = 'u'`)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, `ALTER TABLE contacts DROP CONSTRAINT `+pgIdent(n)); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `DROP INDEX IF EXISTS contacts_email_key`)
	return err
}}

// pgIdent quotes a PostgreSQL identifier.
func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// migrateParts applies the schema parts not yet recorded.
func (s *Store) migrateParts(ctx context.Context) error {
	for _, p := range schemaParts {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM meta WHERE k = ?`), "part:"+p.name).Scan(&n); err != nil {
				return fmt.Errorf("audience: schema part %s: %w", p.name, err)
			}
			if n > 0 {
				return nil
			}
			own := p.sqlite
			if s.d == postgres {
				own = p.postgres
			}
			for _, st := range append(slices.Clip(p.stmts), own...) {
				if _, err := tx.ExecContext(ctx, s.expand(st)); err != nil {
					return fmt.Errorf("audience: schema part %s: %w", p.name, err)
				}
			}
			if p.fn != nil {
				if err := p.fn(ctx, s, tx); err != nil {
					return fmt.Errorf("audience: schema part %s: %w", p.name, err)
				}
			}
			_, err := s.exec(ctx, tx, `INSERT INTO meta (k, v) VALUES (?, '1')`, "part:"+p.name)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// metaSecret returns the 32-byte secret stored in meta under k, creating
// a random one on first use. It lives in the database so that every host
// sharing a PostgreSQL database agrees on it.
func (s *Store) metaSecret(ctx context.Context, k string) ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("audience: %s: %w", k, err)
	}
	if _, err := s.exec(ctx, s.db, `INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING`, k, hex.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("audience: %s: %w", k, err)
	}
	var v string
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT v FROM meta WHERE k = ?`), k).Scan(&v); err != nil {
		return nil, fmt.Errorf("audience: %s: %w", k, err)
	}
	key, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("audience: %s: %w", k, err)
	}
	return key, nil
}
