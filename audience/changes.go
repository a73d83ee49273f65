package audience

// The change log: contact changes other ESP packages react to (the
// automation flows' "tag added", "tag removed" and "joined" triggers),
// written in the same transaction as the change itself, so a committed
// change always has its record and a rolled-back one never does (a
// transactional outbox). Readers follow it after their own durable cursor
// (Changes, in id order) and prune what every reader has consumed.
//
// Tags are logged by the Go code that writes them (insertTags and the
// removals report the rows they really changed, so replacing a contact's
// tags with the same set logs nothing); "joined" is logged by a trigger
// on contacts, so every path that makes a contact active — created
// active, or confirmed from pending (double opt-in) — logs it.

import (
	"context"
	"database/sql"
	"fmt"
)

// Change kinds.
const (
	ChangeTagAdded   = "tag_added"
	ChangeTagRemoved = "tag_removed"
	ChangeJoined     = "joined"
)

// Change is one logged contact change.
type Change struct {
	ID       int64  `json:"id"`
	Audience int64  `json:"audience_id"`
	Contact  int64  `json:"contact_id"`
	Kind     string `json:"kind"`
	// Value is the tag of a tag change.
	Value string `json:"value,omitempty"`
	At    int64  `json:"at"`
}

// changeSchema creates the change log and its trigger (idempotent; run by
// Open after the migrations).
func (s *Store) changeSchema(ctx context.Context) error {
	stmts := []string{s.expand(`CREATE TABLE IF NOT EXISTS contact_changes (
		id {{id}},
		audience_id BIGINT NOT NULL,
		contact_id BIGINT NOT NULL,
		kind TEXT NOT NULL,
		value TEXT NOT NULL DEFAULT '',
		at BIGINT NOT NULL)`)}
	if s.d == postgres {
		stmts = append(stmts, `CREATE OR REPLACE FUNCTION contact_joined() RETURNS trigger AS $$
			BEGIN
				IF NEW.status = 'active' AND (TG_OP = 'INSERT' OR OLD.status = 'pending') THEN
					INSERT INTO contact_changes (audience_id, contact_id, kind, at) VALUES (NEW.audience_id, NEW.id, 'joined', NEW.updated_at);
				END IF;
				RETURN NULL;
			END $$ LANGUAGE plpgsql`,
			`CREATE OR REPLACE TRIGGER contacts_joined AFTER INSERT OR UPDATE OF status ON contacts FOR EACH ROW EXECUTE FUNCTION contact_joined()`)
	} else {
		stmts = append(stmts,
			`CREATE TRIGGER IF NOT EXISTS contacts_joined_insert AFTER INSERT ON contacts WHEN NEW.status = 'active' BEGIN
				INSERT INTO contact_changes (audience_id, contact_id, kind, at) VALUES (NEW.audience_id, NEW.id, 'joined', NEW.updated_at); END`,
			`CREATE TRIGGER IF NOT EXISTS contacts_joined_update AFTER UPDATE OF status ON contacts WHEN OLD.status = 'pending' AND NEW.status = 'active' BEGIN
				INSERT INTO contact_changes (audience_id, contact_id, kind, at) VALUES (NEW.audience_id, NEW.id, 'joined', NEW.updated_at); END`)
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("audience: change log: %w", err)
		}
	}
	return nil
}

// logTagChanges records tag changes of one transaction: removed and
// added rows that cancel out (tags replaced by the same tags) are not
// changes.
func (s *Store) logTagChanges(ctx context.Context, tx dbtx, removed, added []tagRow) error {
	if len(removed) == 0 && len(added) == 0 {
		return nil
	}
	gone := make(map[tagRow]bool, len(removed))
	for _, r := range removed {
		gone[r] = true
	}
	var rows []Change
	for _, a := range added {
		if gone[a] {
			delete(gone, a)
			continue
		}
		rows = append(rows, Change{Contact: a.id, Kind: ChangeTagAdded, Value: a.tag})
	}
	for _, r := range removed {
		if gone[r] {
			rows = append(rows, Change{Contact: r.id, Kind: ChangeTagRemoved, Value: r.tag})
		}
	}
	now := s.now()
	for len(rows) > 0 {
		n := min(len(rows), 2000)
		args := make([]any, 0, 4*n)
		for _, c := range rows[:n] {
			args = append(args, c.Contact, c.Kind, c.Value, now)
		}
		rows = rows[n:]
		q := `INSERT INTO contact_changes (audience_id, contact_id, kind, value, at) SELECT c.audience_id, v.id, v.kind, v.value, v.at FROM (VALUES ` +
			repeatTuple("(CAST(? AS BIGINT),?,?,CAST(? AS BIGINT))", n) + `) AS v(id, kind, value, at) JOIN contacts c ON c.id = v.id`
		if s.d == sqlite {
			// SQLite names VALUES columns column1..4.
			q = `INSERT INTO contact_changes (audience_id, contact_id, kind, value, at) SELECT c.audience_id, v.column1, v.column2, v.column3, v.column4 FROM (VALUES ` +
				repeatTuple("(?,?,?,?)", n) + `) AS v JOIN contacts c ON c.id = v.column1`
		}
		if _, err := s.bulkExec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("audience: change log: %w", err)
		}
	}
	return nil
}

func repeatTuple(t string, n int) string {
	b := make([]byte, 0, (len(t)+1)*n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, t...)
	}
	return string(b)
}

// scanTagRows reads (contact_id, tag) rows.
func scanTagRows(rows *sql.Rows, err error) ([]tagRow, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tagRow
	for rows.Next() {
		var t tagRow
		if err := rows.Scan(&t.id, &t.tag); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Changes returns up to limit logged changes with id > after, in id
// order.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, audience_id, contact_id, kind, value, at FROM contact_changes WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("audience: changes: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.ID, &c.Audience, &c.Contact, &c.Kind, &c.Value, &c.At); err != nil {
			return nil, fmt.Errorf("audience: changes: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PruneChanges deletes the logged changes with id <= upTo (every reader
// has consumed them).
func (s *Store) PruneChanges(ctx context.Context, upTo int64) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM contact_changes WHERE id <= ?`), upTo); err != nil {
		return fmt.Errorf("audience: prune changes: %w", err)
	}
	return nil
}
