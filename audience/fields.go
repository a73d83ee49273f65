package audience

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxFields is the number of custom fields an audience may declare.
const MaxFields = 50

// maxText bounds a text value (custom or default field), in bytes.
const maxText = 4096

// FieldType is the declared type of a custom field.
type FieldType string

// Field types.
const (
	Text     FieldType = "text"
	Number   FieldType = "number"
	Boolean  FieldType = "boolean"
	Date     FieldType = "date"     // "2006-01-02", stored as Unix seconds at 00:00 UTC
	DateTime FieldType = "datetime" // RFC 3339, stored as Unix seconds
	Enum     FieldType = "enum"     // one of Field.Values
)

// Field is a custom field an audience declares.
type Field struct {
	Name string    `json:"name"`
	Type FieldType `json:"type"`
	// Values are the allowed values of an enum field.
	Values []string `json:"values,omitempty"`

	slot int // the field's position in its audience: its slot column (slots.go)
}

// Audience is a list of contacts with its own custom fields.
type Audience struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	DoubleOptIn bool      `json:"double_opt_in"`
	CreatedAt   time.Time `json:"created_at"`
	Fields      []Field   `json:"fields"`
}

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// reserved are names a custom field may not take: the contact's own
// columns and segment variables, and CEL's reserved words.
var reserved = map[string]bool{
	"email": true, "status": true, "tags": true, "now": true, "id": true,
	"name": true, "phone": true, "gender": true, "birthday": true, "age": true,
	"time_zone": true, "locale": true, "created_at": true, "updated_at": true,
	"last_sent": true, "last_opened": true, "last_clicked": true, "fields": true,
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true,
	"const": true, "continue": true, "else": true, "for": true, "function": true,
	"if": true, "import": true, "let": true, "loop": true, "package": true,
	"namespace": true, "return": true, "var": true, "void": true, "while": true,
}

func (f *Field) check() error {
	if !fieldName.MatchString(f.Name) {
		return invalid("invalid_field", "field name %q: want a lower-case letter then up to 62 of a-z, 0-9, _", f.Name)
	}
	if reserved[f.Name] {
		return invalid("invalid_field", "field name %q is reserved", f.Name)
	}
	switch f.Type {
	case Text, Number, Boolean, Date, DateTime:
		if len(f.Values) > 0 {
			return invalid("invalid_field", "field %q: values are only for enum fields", f.Name)
		}
	case Enum:
		if len(f.Values) == 0 || len(f.Values) > 256 {
			return invalid("invalid_field", "enum field %q needs 1 to 256 values", f.Name)
		}
		for _, v := range f.Values {
			if v == "" || len(v) > 256 || strings.ContainsAny(v, "\n\x00") {
				return invalid("invalid_field", "enum field %q: invalid value %q", f.Name, v)
			}
		}
	default:
		return invalid("invalid_field", "field %q: unknown type %q (want text, number, boolean, date, datetime or enum)", f.Name, f.Type)
	}
	return nil
}

// parse validates a value given for f (a JSON value or, from CSV, a
// string) and returns the stored form; nil clears the field.
func (f *Field) parse(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	bad := func(want string) error {
		return invalid("invalid_value", "field %q: %v is not %s", f.Name, quoteValue(v), want)
	}
	s, isStr := v.(string)
	if isStr && s == "" {
		return nil, nil
	}
	switch f.Type {
	case Text:
		if !isStr {
			return nil, bad("text")
		}
		if len(s) > maxText || strings.ContainsRune(s, 0) {
			return nil, invalid("invalid_value", "field %q: text longer than %d bytes or with NUL", f.Name, maxText)
		}
		return s, nil
	case Enum:
		if !isStr || !slices.Contains(f.Values, s) {
			return nil, bad("one of " + strings.Join(f.Values, ", "))
		}
		return s, nil
	case Number:
		var n float64
		switch x := v.(type) {
		case float64:
			n = x
		case int:
			n = float64(x)
		case int64:
			n = float64(x)
		case string:
			p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, bad("a number")
			}
			n = p
		default:
			return nil, bad("a number")
		}
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, bad("a finite number")
		}
		return n, nil
	case Boolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true", "1", "yes", "y":
				return true, nil
			case "false", "0", "no", "n":
				return false, nil
			}
		}
		return nil, bad("a boolean")
	case Date:
		if !isStr {
			return nil, bad("a date (YYYY-MM-DD)")
		}
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
		if err != nil {
			return nil, bad("a date (YYYY-MM-DD)")
		}
		return t.Unix(), nil
	case DateTime:
		if !isStr {
			return nil, bad("a datetime (RFC 3339)")
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
		if err != nil {
			return nil, bad("a datetime (RFC 3339)")
		}
		return t.Unix(), nil
	}
	return nil, fmt.Errorf("audience: field %q has unknown type %q", f.Name, f.Type)
}

// present turns a stored value back into its API form.
func (f *Field) present(v any) any {
	switch f.Type {
	case Date, DateTime:
		n, ok := toInt64(v)
		if !ok {
			return v
		}
		t := time.Unix(n, 0).UTC()
		if f.Type == Date {
			return t.Format(time.DateOnly)
		}
		return t.Format(time.RFC3339)
	case Boolean:
		// SQLite's JSON has no booleans of its own once extracted; the
		// stored JSON keeps them, so this is only defensive.
		if n, ok := toInt64(v); ok {
			return n != 0
		}
	}
	return v
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// CreateAudience creates an audience with its custom fields.
func (s *Store) CreateAudience(ctx context.Context, a Audience) (Audience, error) {
	a.Name = strings.TrimSpace(a.Name)
	if a.Name == "" || len(a.Name) > 200 {
		return Audience{}, invalid("invalid_audience", "audience name must be 1 to 200 bytes")
	}
	if err := checkFields(a.Fields); err != nil {
		return Audience{}, err
	}
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.q(`INSERT INTO audiences (name, double_opt_in, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id`),
			a.Name, a.DoubleOptIn, now).Scan(&a.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return conflict("audience_exists", "audience %q exists", a.Name)
		}
		if err != nil {
			return fmt.Errorf("audience: create: %w", err)
		}
		return s.insertFields(ctx, tx, a.ID, 0, a.Fields)
	})
	if err != nil {
		return Audience{}, err
	}
	a.CreatedAt = time.Unix(now, 0).UTC()
	if a.Fields == nil {
		a.Fields = []Field{}
	}
	return a, nil
}

func checkFields(fs []Field) error {
	if len(fs) > MaxFields {
		return invalid("too_many_fields", "an audience has at most %d custom fields", MaxFields)
	}
	seen := map[string]bool{}
	for i := range fs {
		if err := fs[i].check(); err != nil {
			return err
		}
		if seen[fs[i].Name] {
			return invalid("invalid_field", "field %q declared twice", fs[i].Name)
		}
		seen[fs[i].Name] = true
	}
	return nil
}

func (s *Store) insertFields(ctx context.Context, tx *sql.Tx, audience int64, pos int, fs []Field) error {
	for i := range fs {
		f := &fs[i]
		f.slot = pos + i
		if _, err := s.exec(ctx, tx, `INSERT INTO fields (audience_id, name, type, enum_values, position) VALUES (?, ?, ?, ?, ?)`,
			audience, f.Name, string(f.Type), strings.Join(f.Values, "\n"), pos+i); err != nil {
			return fmt.Errorf("audience: add field: %w", err)
		}
	}
	return nil
}

// AddFields declares more custom fields on an audience.
func (s *Store) AddFields(ctx context.Context, audience int64, fs []Field) (Audience, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		a, err := s.audience(ctx, tx, audience)
		if err != nil {
			return err
		}
		all := append(slices.Clone(a.Fields), fs...)
		if err := checkFields(all); err != nil {
			return err
		}
		return s.insertFields(ctx, tx, audience, len(a.Fields), fs)
	})
	if err != nil {
		return Audience{}, err
	}
	return s.Audience(ctx, audience)
}

// Audience returns one audience with its fields.
func (s *Store) Audience(ctx context.Context, id int64) (Audience, error) {
	return s.audience(ctx, s.db, id)
}

func (s *Store) audience(ctx context.Context, db dbtx, id int64) (Audience, error) {
	var a Audience
	var created int64
	err := db.QueryRowContext(ctx, s.q(`SELECT id, name, double_opt_in, created_at FROM audiences WHERE id = ?`), id).Scan(&a.ID, &a.Name, &a.DoubleOptIn, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Audience{}, notFound("no audience %d", id)
	}
	if err != nil {
		return Audience{}, fmt.Errorf("audience: get: %w", err)
	}
	a.CreatedAt = time.Unix(created, 0).UTC()
	rows, err := db.QueryContext(ctx, s.q(`SELECT name, type, enum_values, position FROM fields WHERE audience_id = ? ORDER BY position`), id)
	if err != nil {
		return Audience{}, fmt.Errorf("audience: fields: %w", err)
	}
	defer rows.Close()
	a.Fields = []Field{}
	for rows.Next() {
		var f Field
		var vals string
		if err := rows.Scan(&f.Name, &f.Type, &vals, &f.slot); err != nil {
			return Audience{}, fmt.Errorf("audience: fields: %w", err)
		}
		if vals != "" {
			f.Values = strings.Split(vals, "\n")
		}
		a.Fields = append(a.Fields, f)
	}
	return a, rows.Err()
}

// Audiences lists every audience (without fields).
func (s *Store) Audiences(ctx context.Context) ([]Audience, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, double_opt_in, created_at FROM audiences ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("audience: list: %w", err)
	}
	defer rows.Close()
	out := []Audience{}
	for rows.Next() {
		var a Audience
		var created int64
		if err := rows.Scan(&a.ID, &a.Name, &a.DoubleOptIn, &created); err != nil {
			return nil, fmt.Errorf("audience: list: %w", err)
		}
		a.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAudience deletes an audience and everything in it.
func (s *Store) DeleteAudience(ctx context.Context, id int64) error {
	res, err := s.exec(ctx, s.db, `DELETE FROM audiences WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("audience: delete: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("no audience %d", id)
	}
	return nil
}

func (a *Audience) field(name string) *Field {
	for i := range a.Fields {
		if a.Fields[i].Name == name {
			return &a.Fields[i]
		}
	}
	return nil
}
