package audience

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is a contact's mailing status.
type Status string

// Contact statuses. Pending is a contact of a double opt-in audience that
// has not confirmed yet.
const (
	Active       Status = "active"
	Pending      Status = "pending"
	Unsubscribed Status = "unsubscribed"
	Bounced      Status = "bounced"
	Complained   Status = "complained"
	Erased       Status = "erased"
)

func (st Status) settable() bool {
	switch st {
	case Active, Pending, Unsubscribed, Bounced, Complained:
		return true
	}
	return false
}

// Contact is one address in one audience.
type Contact struct {
	ID          int64          `json:"id"`
	AudienceID  int64          `json:"audience_id"`
	Email       string         `json:"email"`
	Status      Status         `json:"status"`
	Name        string         `json:"name,omitempty"`
	Phone       string         `json:"phone,omitempty"`
	Gender      string         `json:"gender,omitempty"`
	Birthday    string         `json:"birthday,omitempty"` // YYYY-MM-DD
	Age         *int           `json:"age,omitempty"`
	TimeZone    string         `json:"time_zone,omitempty"`
	Locale      string         `json:"locale,omitempty"`
	Fields      map[string]any `json:"fields"`
	Tags        []string       `json:"tags"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	LastSent    *time.Time     `json:"last_sent,omitempty"`
	LastOpened  *time.Time     `json:"last_opened,omitempty"`
	LastClicked *time.Time     `json:"last_clicked,omitempty"`
}

// ContactInput is a create or update of one contact. Nil pointers and a
// nil Tags leave what is stored unchanged; a Fields entry whose value is
// null clears that field.
type ContactInput struct {
	Email    string         `json:"email"`
	Status   Status         `json:"status,omitempty"`
	Name     *string        `json:"name,omitempty"`
	Phone    *string        `json:"phone,omitempty"`
	Gender   *string        `json:"gender,omitempty"`
	Birthday *string        `json:"birthday,omitempty"`
	Age      *int           `json:"age,omitempty"`
	TimeZone *string        `json:"time_zone,omitempty"`
	Locale   *string        `json:"locale,omitempty"`
	Fields   map[string]any `json:"fields,omitempty"`
	Tags     []string       `json:"tags,omitempty"`
}

// OnDuplicate says what an upsert does with an address already stored.
type OnDuplicate string

// Duplicate handling.
const (
	DupUpdate OnDuplicate = "update"
	DupSkip   OnDuplicate = "skip"
)

// TagMode says what an upsert does with the tags of an existing contact.
type TagMode string

// Tag handling.
const (
	TagsAdd     TagMode = "add"     // add the given tags
	TagsReplace TagMode = "replace" // the contact's tags become the given ones
	TagsSkip    TagMode = "skip"    // leave tags alone
)

// row is a validated ContactInput, ready to write.
type row struct {
	email, key                            string
	status                                Status // "" = leave (existing) or the audience default (new)
	name, phone, gender, timeZone, locale *string
	birthday                              *int64
	age                                   *int
	fields                                map[string]any // stored forms; nil values clear
	tags                                  []string
	tagsGiven                             bool
}

// Outcome is what an upsert did with one row.
type Outcome int

// Outcomes.
const (
	Created Outcome = iota + 1
	Updated
	Skipped
	Failed
)

// RowResult is the outcome of one row of a bulk upsert.
type RowResult struct {
	Outcome Outcome
	ID      int64  // contact id (0 when skipped or failed)
	Column  string // failed: the column or field at fault
	Reason  string // failed: why
}

func optText(field string, v *string) error {
	if v == nil {
		return nil
	}
	if len(*v) > maxText || !utf8.ValidString(*v) || strings.ContainsRune(*v, 0) {
		return invalid("invalid_value", "%s: not valid UTF-8 text of at most %d bytes", field, maxText)
	}
	return nil
}

// fieldError carries the column a validation error is about.
type fieldError struct {
	col string
	err error
}

func (e *fieldError) Error() string { return e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func (a *Audience) validate(in *ContactInput) (row, error) {
	var r row
	email, key, err := NormalizeEmail(in.Email)
	if err != nil {
		return r, &fieldError{"email", err}
	}
	r.email, r.key = email, key
	if in.Status != "" && !in.Status.settable() {
		return r, &fieldError{"status", invalid("invalid_status", "status %q: want active, pending, unsubscribed, bounced or complained", in.Status)}
	}
	r.status = in.Status
	for _, t := range []struct {
		col string
		v   *string
	}{{"name", in.Name}, {"phone", in.Phone}, {"gender", in.Gender}, {"time_zone", in.TimeZone}, {"locale", in.Locale}} {
		if err := optText(t.col, t.v); err != nil {
			return r, &fieldError{t.col, err}
		}
	}
	r.name, r.phone, r.gender, r.timeZone, r.locale = in.Name, in.Phone, in.Gender, in.TimeZone, in.Locale
	if in.TimeZone != nil && *in.TimeZone != "" {
		if _, err := time.LoadLocation(*in.TimeZone); err != nil || *in.TimeZone == "Local" {
			return r, &fieldError{"time_zone", invalid("invalid_value", "time_zone %q is not an IANA time zone", *in.TimeZone)}
		}
	}
	if in.Birthday != nil && *in.Birthday != "" {
		t, err := time.Parse(time.DateOnly, *in.Birthday)
		if err != nil {
			return r, &fieldError{"birthday", invalid("invalid_value", "birthday %q is not a date (YYYY-MM-DD)", *in.Birthday)}
		}
		u := t.Unix()
		r.birthday = &u
	}
	if in.Age != nil {
		if *in.Age < 0 || *in.Age > 150 {
			return r, &fieldError{"age", invalid("invalid_value", "age %d out of range 0-150", *in.Age)}
		}
		r.age = in.Age
	}
	if len(in.Fields) > 0 {
		r.fields = make(map[string]any, len(in.Fields))
		for k, v := range in.Fields {
			f := a.field(k)
			if f == nil {
				return r, &fieldError{k, invalid("unknown_field", "audience %q has no field %q", a.Name, k)}
			}
			sv, err := f.parse(v)
			if err != nil {
				return r, &fieldError{k, err}
			}
			r.fields[k] = sv
		}
	}
	if in.Tags != nil {
		r.tagsGiven = true
		for _, t := range in.Tags {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if err := checkTag(t); err != nil {
				return r, &fieldError{"tags", err}
			}
			if !slices.Contains(r.tags, t) {
				r.tags = append(r.tags, t)
			}
		}
	}
	return r, nil
}

func checkTag(t string) error {
	if len(t) > 100 || !utf8.ValidString(t) || strings.ContainsAny(t, "\x00\n") {
		return invalid("invalid_tag", "tag %q: at most 100 bytes of UTF-8 without NUL or newline", t)
	}
	return nil
}

// UpsertContact creates or updates one contact and returns it.
func (s *Store) UpsertContact(ctx context.Context, audience int64, in ContactInput) (Contact, Outcome, error) {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return Contact{}, 0, err
	}
	r, err := a.validate(&in)
	if err != nil {
		return Contact{}, 0, err
	}
	var res []RowResult
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.upsert(ctx, tx, &a, []row{r}, DupUpdate, TagsReplace)
		return err
	})
	if err != nil {
		return Contact{}, 0, err
	}
	if res[0].Outcome == Failed {
		return Contact{}, Failed, conflict("erased", "%s", res[0].Reason)
	}
	c, err := s.Contact(ctx, audience, res[0].ID)
	return c, res[0].Outcome, err
}

// UpsertContacts creates or updates many contacts in one transaction.
// Rows that fail validation are reported in their RowResult and the rest
// are written.
func (s *Store) UpsertContacts(ctx context.Context, audience int64, ins []ContactInput, dup OnDuplicate, tags TagMode) ([]RowResult, error) {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return nil, err
	}
	out := make([]RowResult, len(ins))
	var rows []row
	var idx []int
	for i := range ins {
		r, err := a.validate(&ins[i])
		if err != nil {
			out[i] = failedRow(err)
			continue
		}
		rows = append(rows, r)
		idx = append(idx, i)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.upsert(ctx, tx, &a, rows, dup, tags)
		for j, r := range res {
			out[idx[j]] = r
		}
		return err
	})
	return out, err
}

func failedRow(err error) RowResult {
	var fe *fieldError
	col := ""
	if errors.As(err, &fe) {
		col = fe.col
	}
	return RowResult{Outcome: Failed, Column: col, Reason: err.Error()}
}

// maxRowsPerStatement bounds a multi-row upsert; SQLite binds at most
// 32,766 parameters, which bounds it further for audiences with many
// fields (rowsPerStatement). PostgreSQL binds one array per column.
const maxRowsPerStatement = 2000

func (s *Store) rowsPerStatement(a *Audience) int {
	if s.d == postgres {
		return maxRowsPerStatement
	}
	return min(maxRowsPerStatement, 32766/(contactCols+len(a.Fields)))
}

// upsert writes validated rows in tx. A row repeating an earlier row's
// address applies after it (the batch is cut in chunks of distinct keys,
// and of at most rowsPerStatement rows).
func (s *Store) upsert(ctx context.Context, tx *sql.Tx, a *Audience, rows []row, dup OnDuplicate, tags TagMode) ([]RowResult, error) {
	out := make([]RowResult, 0, len(rows))
	start := 0
	per := s.rowsPerStatement(a)
	seen := map[string]bool{}
	for i := 0; i <= len(rows); i++ {
		if i < len(rows) && !seen[rows[i].key] && i-start < per {
			seen[rows[i].key] = true
			continue
		}
		if i > start {
			res, err := s.upsertChunk(ctx, tx, a, rows[start:i], dup, tags)
			if err != nil {
				return out, err
			}
			out = append(out, res...)
		}
		if i < len(rows) {
			start = i
			clear(seen)
			seen[rows[i].key] = true
		}
	}
	return out, nil
}

const contactCols = 14

// contactInsertCols are the columns an upsert writes, before the slots.
const contactInsertCols = `audience_id, email, email_key, status, name, phone, gender, birthday, age, time_zone, locale, fields, created_at, updated_at`

func (s *Store) upsertChunk(ctx context.Context, tx *sql.Tx, a *Audience, rows []row, dup OnDuplicate, tags TagMode) ([]RowResult, error) {
	out := make([]RowResult, len(rows))
	keys := make([]string, len(rows))
	hashes := make([]string, len(rows))
	for i := range rows {
		keys[i] = rows[i].key
		hashes[i] = s.erasureHash(rows[i].key)
	}
	existing, err := s.stringSet(ctx, tx, `SELECT email_key FROM contacts WHERE audience_id = ? AND email_key`, []any{a.ID}, keys)
	if err != nil {
		return nil, err
	}
	erased, err := s.stringSet(ctx, tx, `SELECT hash FROM erased WHERE hash`, nil, hashes)
	if err != nil {
		return nil, err
	}
	now := s.now()
	defStatus := Active
	if a.DoubleOptIn {
		defStatus = Pending
	}
	// Rows are written in key order so that concurrent writers (two
	// imports into one audience) lock the same keys in the same order
	// and cannot deadlock.
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return strings.Compare(rows[x].key, rows[y].key) })
	w := newContactWriter(s.d, a, len(rows))
	for _, i := range order {
		r := &rows[i]
		switch {
		case erased[hashes[i]]:
			out[i] = RowResult{Outcome: Failed, Column: "email", Reason: "address was erased and cannot be added again"}
			continue
		case existing[r.key] && dup == DupSkip:
			out[i] = RowResult{Outcome: Skipped}
			continue
		case existing[r.key]:
			out[i].Outcome = Updated
		default:
			out[i].Outcome = Created
		}
		st := r.status
		var fields []byte
		if out[i].Outcome == Created {
			if st == "" {
				st = defStatus
			}
			fields = marshalFields(r.fields, true)
		} else {
			fields = marshalFields(r.fields, false)
		}
		w.add(r, st, fields)
	}
	if w.n == 0 {
		return out, nil
	}
	merge := `jsonb_patch(contacts.fields, excluded.fields)`
	if s.d == postgres {
		merge = `jsonb_strip_nulls(contacts.fields || excluded.fields)`
	}
	q := `INSERT INTO contacts (` + contactInsertCols + w.slotCols + `) ` + w.source(now)
	if dup == DupSkip {
		q += ` ON CONFLICT (audience_id, email_key) DO NOTHING`
	} else {
		q += ` ON CONFLICT (audience_id, email_key) DO UPDATE SET email = excluded.email,
			status = CASE WHEN excluded.status = '' THEN contacts.status ELSE excluded.status END,
			name = COALESCE(excluded.name, contacts.name), phone = COALESCE(excluded.phone, contacts.phone),
			gender = COALESCE(excluded.gender, contacts.gender), birthday = COALESCE(excluded.birthday, contacts.birthday),
			age = COALESCE(excluded.age, contacts.age), time_zone = COALESCE(excluded.time_zone, contacts.time_zone),
			locale = COALESCE(excluded.locale, contacts.locale), fields = ` + merge + s.slotUpdates(a) + `, updated_at = excluded.updated_at`
	}
	q += ` RETURNING id, email_key`
	rs, err := s.bulkQuery(ctx, tx, q, w.args(a.ID, now)...)
	if err != nil {
		return nil, fmt.Errorf("audience: upsert: %w", err)
	}
	ids := make(map[string]int64, w.n)
	for rs.Next() {
		var id int64
		var k string
		if err := rs.Scan(&id, &k); err != nil {
			rs.Close()
			return nil, fmt.Errorf("audience: upsert: %w", err)
		}
		ids[k] = id
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("audience: upsert: %w", err)
	}
	var replace []int64
	var add []tagRow
	for i := range rows {
		if out[i].Outcome != Created && out[i].Outcome != Updated {
			continue
		}
		id, ok := ids[rows[i].key]
		if !ok { // inserted concurrently by another writer after our check
			out[i] = RowResult{Outcome: Skipped}
			continue
		}
		out[i].ID = id
		if tags == TagsSkip || !rows[i].tagsGiven {
			continue
		}
		if tags == TagsReplace && out[i].Outcome == Updated {
			replace = append(replace, id)
		}
		for _, t := range rows[i].tags {
			add = append(add, tagRow{id, t})
		}
	}
	removed, err := s.deleteTagsOf(ctx, tx, replace)
	if err != nil {
		return nil, err
	}
	added, err := s.insertTags(ctx, tx, add)
	if err != nil {
		return nil, err
	}
	return out, s.logTagChanges(ctx, tx, removed, added)
}

// contactWriter collects the rows of one upsert statement: SQLite gets a
// multi-row VALUES list (its statements are prepared once per text),
// PostgreSQL one array per column expanded by unnest, so that a 2,000-row
// statement binds 14 + fields parameters instead of 28,000 and more.
type contactWriter struct {
	d        dialect
	a        *Audience
	n        int
	slotCols string // ", f0, f1, ..." in the audience's field order

	// SQLite
	vals []any

	// PostgreSQL, one slice per column
	email, key, status, fields      []string
	name, phone, gender, tz, locale []*string
	birthday                        []*int64
	age                             []*int64
	text                            [][]*string  // per field (text slots)
	num                             [][]*float64 // per field (numeric slots)
}

func newContactWriter(d dialect, a *Audience, n int) *contactWriter {
	w := &contactWriter{d: d, a: a}
	var b strings.Builder
	for i := range a.Fields {
		b.WriteString(", ")
		b.WriteString(slotName(d, a.Fields[i].numeric(), a.Fields[i].slot))
	}
	w.slotCols = b.String()
	if d == sqlite {
		w.vals = make([]any, 0, n*(contactCols+len(a.Fields)))
		return w
	}
	w.text = make([][]*string, len(a.Fields))
	w.num = make([][]*float64, len(a.Fields))
	return w
}

func (w *contactWriter) add(r *row, st Status, fields []byte) {
	w.n++
	if w.d == sqlite {
		w.vals = append(w.vals, nil, r.email, r.key, string(st), r.name, r.phone, r.gender, r.birthday, r.age, r.timeZone, r.locale, string(fields), nil, nil)
		for i := range w.a.Fields {
			w.vals = append(w.vals, slotValue(r.fields[w.a.Fields[i].Name]))
		}
		return
	}
	w.email = append(w.email, r.email)
	w.key = append(w.key, r.key)
	w.status = append(w.status, string(st))
	w.fields = append(w.fields, string(fields))
	w.name = append(w.name, r.name)
	w.phone = append(w.phone, r.phone)
	w.gender = append(w.gender, r.gender)
	w.tz = append(w.tz, r.timeZone)
	w.locale = append(w.locale, r.locale)
	w.birthday = append(w.birthday, r.birthday)
	var age *int64
	if r.age != nil {
		age = ptr(int64(*r.age))
	}
	w.age = append(w.age, age)
	for i := range w.a.Fields {
		f := &w.a.Fields[i]
		v := slotValue(r.fields[f.Name])
		if !f.numeric() {
			var p *string
			if sv, ok := v.(string); ok {
				p = &sv
			}
			w.text[i] = append(w.text[i], p)
			continue
		}
		var p *float64
		switch x := v.(type) {
		case float64:
			p = &x
		case int64:
			p = ptr(float64(x))
		}
		w.num[i] = append(w.num[i], p)
	}
}

// source is the statement's row source after the column list.
func (w *contactWriter) source(now int64) string {
	nf := len(w.a.Fields)
	if w.d == sqlite {
		// SQLite keeps fields as JSONB (binary): conditions that still
		// read it (none of the slot ones) extract from it about 4x
		// faster than from JSON text.
		tuple := "(?,?,?,?,?,?,?,?,?,?,?,jsonb(?),?,?" + strings.Repeat(",?", nf) + ")"
		return "VALUES " + repeatTuple(tuple, w.n)
	}
	var sel, un strings.Builder
	sel.WriteString("SELECT CAST(? AS BIGINT), u.email, u.key, u.status, u.name, u.phone, u.gender, u.birthday, CAST(u.age AS INTEGER), u.tz, u.locale, CAST(u.fields AS JSONB), CAST(? AS BIGINT), CAST(? AS BIGINT)")
	un.WriteString(" FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[])")
	cols := "email, key, status, name, phone, gender, birthday, age, tz, locale, fields"
	for i := range w.a.Fields {
		fmt.Fprintf(&sel, ", u.s%d", i)
		if w.a.Fields[i].numeric() {
			un.WriteString(", CAST(? AS DOUBLE PRECISION[])")
		} else {
			un.WriteString(", CAST(? AS TEXT[])")
		}
		cols += fmt.Sprintf(", s%d", i)
	}
	return sel.String() + un.String() + ") AS u(" + cols + ")"
}

// args are the statement's arguments, in source's order.
func (w *contactWriter) args(audience, now int64) []any {
	if w.d == sqlite {
		for i := 0; i < len(w.vals); i += contactCols + len(w.a.Fields) {
			w.vals[i], w.vals[i+12], w.vals[i+13] = audience, now, now
		}
		return w.vals
	}
	out := []any{audience, now, now, w.email, w.key, w.status, w.name, w.phone, w.gender, w.birthday, w.age, w.tz, w.locale, w.fields}
	for i := range w.a.Fields {
		if w.a.Fields[i].numeric() {
			out = append(out, w.num[i])
		} else {
			out = append(out, w.text[i])
		}
	}
	return out
}

func marshalFields(f map[string]any, dropNulls bool) []byte {
	if len(f) == 0 {
		return []byte("{}")
	}
	return appendFieldsJSON(make([]byte, 0, 32*len(f)), f, dropNulls) // fieldjson.go
}

// stringSet runs prefix + " IN (?,...)" (SQLite) or prefix + " =
// ANY(?)" (PostgreSQL, one array) with pre and vals as arguments and
// returns the first column's values.
func (s *Store) stringSet(ctx context.Context, db dbtx, prefix string, pre []any, vals []string) (map[string]bool, error) {
	set := map[string]bool{}
	if len(vals) == 0 {
		return set, nil
	}
	args := slices.Clone(pre)
	q := prefix + " = ANY(CAST(? AS TEXT[]))"
	if s.d == sqlite {
		q = prefix + " IN (" + strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",") + ")"
		for _, v := range vals {
			args = append(args, v)
		}
	} else {
		args = append(args, vals)
	}
	rows, err := s.bulkQuery(ctx, db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audience: lookup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("audience: lookup: %w", err)
		}
		set[k] = true
	}
	return set, rows.Err()
}

type tagRow struct {
	id  int64
	tag string
}

// tagArrays is rows as two PostgreSQL array arguments (ids, tags).
func tagArrays(rows []tagRow) []any {
	ids := make([]int64, len(rows))
	tags := make([]string, len(rows))
	for i, t := range rows {
		ids[i], tags[i] = t.id, t.tag
	}
	return []any{ids, tags}
}

// insertTags adds tags and returns the rows that were not there (for the
// change log).
func (s *Store) insertTags(ctx context.Context, tx dbtx, tags []tagRow) ([]tagRow, error) {
	var added []tagRow
	per := 5000
	if s.d == postgres {
		per = 100_000 // arrays: two parameters whatever the size
	}
	for len(tags) > 0 {
		n := min(len(tags), per)
		chunk := tags[:n]
		tags = tags[n:]
		args := make([]any, 0, 2*n)
		for _, t := range chunk {
			args = append(args, t.id, t.tag)
		}
		q := `INSERT INTO contact_tags (contact_id, tag) VALUES ` + strings.TrimSuffix(strings.Repeat("(?,?),", n), ",") + ` ON CONFLICT DO NOTHING RETURNING contact_id, tag`
		if s.d == postgres {
			q, args = `INSERT INTO contact_tags (contact_id, tag) SELECT * FROM unnest(CAST(? AS BIGINT[]), CAST(? AS TEXT[])) ON CONFLICT DO NOTHING RETURNING contact_id, tag`, tagArrays(chunk)
		}
		rows, err := scanTagRows(s.bulkQuery(ctx, tx, q, args...))
		if err != nil {
			return nil, fmt.Errorf("audience: tags: %w", err)
		}
		added = append(added, rows...)
	}
	return added, nil
}

// deleteTagsOf removes every tag of the contacts and returns the removed
// rows (for the change log).
func (s *Store) deleteTagsOf(ctx context.Context, tx dbtx, ids []int64) ([]tagRow, error) {
	var removed []tagRow
	for len(ids) > 0 {
		n := min(len(ids), 5000)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ids = ids[n:]
		q := `DELETE FROM contact_tags WHERE contact_id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `) RETURNING contact_id, tag`
		if s.d == postgres {
			ids := make([]int64, n)
			for i := range args {
				ids[i] = args[i].(int64)
			}
			q, args = `DELETE FROM contact_tags WHERE contact_id = ANY(CAST(? AS BIGINT[])) RETURNING contact_id, tag`, []any{ids}
		}
		rows, err := scanTagRows(tx.QueryContext(ctx, s.q(q), args...))
		if err != nil {
			return nil, fmt.Errorf("audience: tags: %w", err)
		}
		removed = append(removed, rows...)
	}
	return removed, nil
}

const contactSelect = `SELECT c.id, c.audience_id, c.email, c.status, c.name, c.phone, c.gender, c.birthday, c.age, c.time_zone, c.locale, c.fields, c.created_at, c.updated_at, c.last_sent, c.last_opened, c.last_clicked FROM contacts c`

// sqliteFields reads SQLite's JSONB fields back as JSON text.
var sqliteFields = strings.NewReplacer("c.locale, c.fields,", "c.locale, json(c.fields),")

// Contact returns one contact of an audience by id.
func (s *Store) Contact(ctx context.Context, audience, id int64) (Contact, error) {
	cs, err := s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.id = ?`, audience, id)
	if err != nil {
		return Contact{}, err
	}
	if len(cs) == 0 {
		return Contact{}, notFound("no contact %d in audience %d", id, audience)
	}
	return cs[0], nil
}

// ContactByEmail returns one contact of an audience by address (compared
// case-insensitively after normalisation).
func (s *Store) ContactByEmail(ctx context.Context, audience int64, email string) (Contact, error) {
	_, key, err := NormalizeEmail(email)
	if err != nil {
		return Contact{}, err
	}
	cs, err := s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.email_key = ?`, audience, key)
	if err != nil {
		return Contact{}, err
	}
	if len(cs) == 0 {
		return Contact{}, notFound("no contact %s in audience %d", email, audience)
	}
	return cs[0], nil
}

// TimeZones returns the distinct time zones the audience's contacts have
// ("" for none), sorted.
func (s *Store) TimeZones(ctx context.Context, audience int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT DISTINCT COALESCE(time_zone, '') FROM contacts WHERE audience_id = ? ORDER BY 1`), audience)
	if err != nil {
		return nil, fmt.Errorf("audience: time zones: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var z string
		if err := rows.Scan(&z); err != nil {
			return nil, fmt.Errorf("audience: time zones: %w", err)
		}
		out = append(out, z)
	}
	return out, rows.Err()
}

// DeleteContact deletes one contact (its ledger goes with it; use Erase
// to forget an address for good).
func (s *Store) DeleteContact(ctx context.Context, audience, id int64) error {
	res, err := s.exec(ctx, s.db, `DELETE FROM contacts WHERE audience_id = ? AND id = ?`, audience, id)
	if err != nil {
		return fmt.Errorf("audience: delete contact: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("no contact %d in audience %d", id, audience)
	}
	return nil
}

// contacts runs a contactSelect query and loads the rows' tags.
func (s *Store) contacts(ctx context.Context, db dbtx, audience int64, query string, args ...any) ([]Contact, error) {
	a, err := s.audience(ctx, db, audience)
	if err != nil {
		return nil, err
	}
	if s.d == sqlite {
		query = sqliteFields.Replace(query)
	}
	rows, err := db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("audience: contacts: %w", err)
	}
	defer rows.Close()
	var out []Contact
	byID := map[int64]int{}
	for rows.Next() {
		var c Contact
		var name, phone, gender, tz, locale sql.NullString
		var bday, age, ls, lo, lc sql.NullInt64
		var fields string
		var created, updated int64
		if err := rows.Scan(&c.ID, &c.AudienceID, &c.Email, &c.Status, &name, &phone, &gender, &bday, &age, &tz, &locale, &fields, &created, &updated, &ls, &lo, &lc); err != nil {
			return nil, fmt.Errorf("audience: contacts: %w", err)
		}
		c.Name, c.Phone, c.Gender, c.TimeZone, c.Locale = name.String, phone.String, gender.String, tz.String, locale.String
		if bday.Valid {
			c.Birthday = time.Unix(bday.Int64, 0).UTC().Format(time.DateOnly)
		}
		if age.Valid {
			v := int(age.Int64)
			c.Age = &v
		}
		c.LastSent, c.LastOpened, c.LastClicked = optTime(ls), optTime(lo), optTime(lc)
		c.CreatedAt, c.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
		c.Fields = map[string]any{}
		if err := json.Unmarshal([]byte(fields), &c.Fields); err != nil {
			return nil, fmt.Errorf("audience: contact %d fields: %w", c.ID, err)
		}
		for k, v := range c.Fields {
			if f := a.field(k); f != nil {
				c.Fields[k] = f.present(v)
			}
		}
		c.Tags = []string{}
		byID[c.ID] = len(out)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audience: contacts: %w", err)
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]any, 0, len(out))
	for _, c := range out {
		ids = append(ids, c.ID)
	}
	trows, err := db.QueryContext(ctx, s.q(`SELECT contact_id, tag FROM contact_tags WHERE contact_id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+`) ORDER BY contact_id, tag`), ids...)
	if err != nil {
		return nil, fmt.Errorf("audience: tags: %w", err)
	}
	defer trows.Close()
	for trows.Next() {
		var id int64
		var t string
		if err := trows.Scan(&id, &t); err != nil {
			return nil, fmt.Errorf("audience: tags: %w", err)
		}
		out[byID[id]].Tags = append(out[byID[id]].Tags, t)
	}
	return out, trows.Err()
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.Unix(v.Int64, 0).UTC()
	return &t
}

// TagContacts adds (or, with remove, removes) tags on the contacts of an
// audience with the given ids, in one transaction. It returns the number
// of contacts found.
func (s *Store) TagContacts(ctx context.Context, audience int64, ids []int64, tags []string, remove bool) (int, error) {
	for _, t := range tags {
		if t == "" {
			return 0, invalid("invalid_tag", "empty tag")
		}
		if err := checkTag(t); err != nil {
			return 0, err
		}
	}
	if len(ids) == 0 || len(tags) == 0 {
		return 0, nil
	}
	var found int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var valid []int64
		for chunk := range slices.Chunk(ids, 5000) {
			args := []any{audience}
			for _, id := range chunk {
				args = append(args, id)
			}
			rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM contacts WHERE audience_id = ? AND id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")+`)`), args...)
			if err != nil {
				return fmt.Errorf("audience: tag: %w", err)
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("audience: tag: %w", err)
				}
				valid = append(valid, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("audience: tag: %w", err)
			}
		}
		found = len(valid)
		if remove {
			for chunk := range slices.Chunk(valid, 1000) {
				args := []any{}
				for _, t := range tags {
					args = append(args, t)
				}
				for _, id := range chunk {
					args = append(args, id)
				}
				q := `DELETE FROM contact_tags WHERE tag IN (` + strings.TrimSuffix(strings.Repeat("?,", len(tags)), ",") + `) AND contact_id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",") + `) RETURNING contact_id, tag`
				removed, err := scanTagRows(tx.QueryContext(ctx, s.q(q), args...))
				if err != nil {
					return fmt.Errorf("audience: untag: %w", err)
				}
				if err := s.logTagChanges(ctx, tx, removed, nil); err != nil {
					return err
				}
			}
			return nil
		}
		var add []tagRow
		for _, id := range valid {
			for _, t := range tags {
				add = append(add, tagRow{id, t})
			}
		}
		added, err := s.insertTags(ctx, tx, add)
		if err != nil {
			return err
		}
		return s.logTagChanges(ctx, tx, nil, added)
	})
	return found, err
}
