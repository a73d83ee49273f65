package audience

// Typed slot columns: every declared custom field's value is also kept in
// a plain column of contacts, chosen by the field's position in its
// audience (a field is never removed, so its position is its slot for
// good). The JSON column stays the contact's record (reads, merges,
// export); the slots are what segment conditions read, because extracting
// from JSON was most of a count's time (README, "Segments": measured).
//
// SQLite columns are untyped, so one family f0..f49 holds any type.
// PostgreSQL needs a type per column: t0..t49 (text) hold text and enum
// fields, n0..n49 (double precision) numbers, booleans (0 or 1) and dates
// and datetimes (Unix seconds, exact in a double). A slot is NULL when the
// field is unset, as the JSON key is absent.

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// numeric reports whether f's slot holds a number (PostgreSQL's n
// family).
func (f *Field) numeric() bool {
	switch f.Type {
	case Number, Boolean, Date, DateTime:
		return true
	}
	return false
}

// slotCol is the name of f's slot column.
func (s *Store) slotCol(f *Field) string {
	return slotName(s.d, f.numeric(), f.slot)
}

func slotName(d dialect, numeric bool, i int) string {
	switch {
	case d == sqlite:
		return "f" + strconv.Itoa(i)
	case numeric:
		return "n" + strconv.Itoa(i)
	}
	return "t" + strconv.Itoa(i)
}

// allSlotCols lists every slot column of the dialect.
func allSlotCols(d dialect) []string {
	var out []string
	for i := range MaxFields {
		out = append(out, slotName(d, false, i))
		if d == postgres {
			out = append(out, slotName(d, true, i))
		}
	}
	return out
}

// slotValue is the SQL argument for a stored field value (Field.parse's
// result; nil clears).
func slotValue(v any) any {
	if b, ok := v.(bool); ok {
		if b {
			return int64(1)
		}
		return int64(0)
	}
	return v
}

// slotsPart adds the slot columns and fills them from the JSON of the
// contacts already stored.
var slotsPart = schemaPart{name: "contacts_slots", fn: fillSlots}

func fillSlots(ctx context.Context, s *Store, tx *sql.Tx) error {
	for i := range MaxFields {
		for _, numeric := range []bool{false, true} {
			if s.d == sqlite && numeric {
				continue
			}
			typ := ""
			switch {
			case s.d == postgres && numeric:
				typ = " DOUBLE PRECISION"
			case s.d == postgres:
				typ = " TEXT"
			}
			if _, err := tx.ExecContext(ctx, `ALTER TABLE contacts ADD COLUMN `+slotName(s.d, numeric, i)+typ); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS fields_position ON fields (audience_id, position)`); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT audience_id, name, type, position FROM fields`)
	if err != nil {
		return err
	}
	type fieldAt struct {
		audience int64
		f        Field
	}
	var fs []fieldAt
	for rows.Next() {
		var x fieldAt
		if err := rows.Scan(&x.audience, &x.f.Name, &x.f.Type, &x.f.slot); err != nil {
			rows.Close()
			return err
		}
		fs = append(fs, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, x := range fs {
		if _, err := s.exec(ctx, tx, `UPDATE contacts SET `+s.slotCol(&x.f)+` = `+s.slotFromJSON(&x.f, "fields")+` WHERE audience_id = ?`, x.audience); err != nil {
			return fmt.Errorf("fill slot of field %q: %w", x.f.Name, err)
		}
	}
	return nil
}

// slotFromJSON is the SQL reading f's stored value out of the JSON column
// col, in its slot's form.
func (s *Store) slotFromJSON(f *Field, col string) string {
	if s.d == sqlite {
		return "json_extract(" + col + ", '$." + f.Name + "')" // names are [a-z0-9_]
	}
	key := "'" + f.Name + "'"
	switch f.Type {
	case Boolean:
		return "CASE " + col + "->>" + key + " WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"
	case Number, Date, DateTime:
		return "(" + col + "->>" + key + ")::double precision"
	}
	return col + "->>" + key
}

// slotUpdates is the ON CONFLICT DO UPDATE assignments of a's slots: a
// field given in the row (its key in the row's JSON, null when cleared)
// takes the row's slot value; the others keep theirs.
func (s *Store) slotUpdates(a *Audience) string {
	var b strings.Builder
	for i := range a.Fields {
		f := &a.Fields[i]
		c := s.slotCol(f)
		has := "json_type(excluded.fields, '$." + f.Name + "') IS NOT NULL"
		if s.d == postgres {
			has = "jsonb_exists(excluded.fields, '" + f.Name + "')"
		}
		fmt.Fprintf(&b, ", %s = CASE WHEN %s THEN excluded.%s ELSE contacts.%s END", c, has, c, c)
	}
	return b.String()
}

// clearSlots is the assignments emptying every slot (erasure).
func (s *Store) clearSlots() string {
	var b strings.Builder
	for _, c := range allSlotCols(s.d) {
		b.WriteString(", " + c + " = NULL")
	}
	return b.String()
}
