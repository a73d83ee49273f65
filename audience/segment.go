package audience

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

// Limits on segment expressions: CEL has no unbounded loops, and these
// bound what the bounded ones (macros over tags) and the parser may cost.
const (
	maxExprBytes     = 4096
	maxExprRecursion = 32
	// evalCostLimit bounds the CEL cost of evaluating an expression for
	// one contact in Go (the SQL path has no per-row CEL cost).
	evalCostLimit = 10_000
)

// Segment is a saved filter expression over an audience's contacts.
type Segment struct {
	ID         int64     `json:"id"`
	AudienceID int64     `json:"audience_id"`
	Name       string    `json:"name"`
	Expression string    `json:"expression"`
	CreatedAt  time.Time `json:"created_at"`
}

// ExprError is a segment expression that does not compile; Line and
// Column (1-based) locate the first problem.
type ExprError struct {
	Line, Column int
	Message      string
}

func (e *ExprError) Error() string {
	return fmt.Sprintf("expression error at %d:%d: %s", e.Line, e.Column, e.Message)
}

// column is a segment variable backed by SQL.
type column struct {
	sqlite, postgres string
	typ              *cel.Type
	kind             FieldType // for custom fields and the defaults' zero values
}

// defaultColumns are the variables every audience's segments see.
func defaultColumns() map[string]column {
	str := func(c string) column {
		e := "COALESCE(c." + c + ", '')"
		return column{e, e, cel.StringType, Text}
	}
	ts := func(c string) column {
		e := "COALESCE(c." + c + ", 0)"
		return column{e, e, cel.TimestampType, DateTime}
	}
	return map[string]column{
		"email": str("email"), "status": str("status"), "name": str("name"), "phone": str("phone"),
		"gender": str("gender"), "time_zone": str("time_zone"), "locale": str("locale"),
		"age":      {"COALESCE(c.age, 0)", "COALESCE(c.age, 0)", cel.IntType, Number},
		"birthday": ts("birthday"), "created_at": ts("created_at"), "updated_at": ts("updated_at"),
		"last_sent": ts("last_sent"), "last_opened": ts("last_opened"), "last_clicked": ts("last_clicked"),
	}
}

// customColumn reads a custom field from its slot column (slots.go).
func customColumn(f Field) column {
	lite := "c." + slotName(sqlite, f.numeric(), f.slot)
	pg := "c." + slotName(postgres, f.numeric(), f.slot)
	switch f.Type {
	case Number:
		return column{"COALESCE(" + lite + ", 0)", "COALESCE(" + pg + ", 0)", cel.DoubleType, Number}
	case Boolean:
		return column{"COALESCE(" + lite + ", 0)", "(COALESCE(" + pg + ", 0) <> 0)", cel.BoolType, Boolean}
	case Date, DateTime:
		return column{"COALESCE(" + lite + ", 0)", "COALESCE(" + pg + ", 0)", cel.TimestampType, DateTime}
	default:
		return column{"COALESCE(" + lite + ", '')", "COALESCE(" + pg + ", '')", cel.StringType, Text}
	}
}

// segQuery is a compiled expression for one audience at one instant.
type segQuery struct {
	prg   cel.Program
	cols  map[string]column
	now   time.Time
	where string // SQL condition; "" when the expression is evaluated in Go
	args  []any
}

func (s *Store) compile(a *Audience, expr string) (*segQuery, error) {
	if len(expr) > maxExprBytes {
		return nil, &ExprError{Line: 1, Column: 1, Message: fmt.Sprintf("expression longer than %d bytes", maxExprBytes)}
	}
	cols := defaultColumns()
	opts := []cel.EnvOption{
		cel.Variable("tags", cel.ListType(cel.StringType)),
		cel.Variable("now", cel.TimestampType),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxExprBytes),
		cel.ParserRecursionLimit(maxExprRecursion),
		ext.Strings(),
	}
	for _, f := range a.Fields {
		cols[f.Name] = customColumn(f)
	}
	for name, c := range cols {
		opts = append(opts, cel.Variable(name, c.typ))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("audience: cel env: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		e := iss.Errors()[0]
		return nil, &ExprError{Line: max(e.Location.Line(), 1), Column: e.Location.Column() + 1, Message: e.Message}
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, &ExprError{Line: 1, Column: 1, Message: fmt.Sprintf("expression is %s, want bool", checked.OutputType())}
	}
	prg, err := env.Program(checked, cel.CostLimit(evalCostLimit))
	if err != nil {
		return nil, &ExprError{Line: 1, Column: 1, Message: err.Error()}
	}
	q := &segQuery{prg: prg, cols: cols, now: s.opts.Now().UTC().Truncate(time.Second)}
	tr := translator{d: s.d, cols: cols, now: q.now}
	if w, err := tr.cond(checked.NativeRep().Expr()); err == nil {
		q.where, q.args = w, tr.args
	}
	return q, nil
}

// errUntranslatable marks an expression outside the SQL subset.
var errUntranslatable = errors.New("not translatable to SQL")

// translator turns the common subset of CEL into SQL conditions:
// && || ! == != < <= > >=, "tag" in tags, x in [list], variables,
// s.contains/startsWith/endsWith(constant) on a string variable,
// literals, now, duration(), timestamp() and timestamp ± duration.
// Unset values are the type's zero value on both paths.
type translator struct {
	d    dialect
	cols map[string]column
	now  time.Time
	args []any
}

func (t *translator) col(name string) (column, string, bool) {
	c, ok := t.cols[name]
	if !ok {
		return c, "", false
	}
	if t.d == postgres {
		return c, c.postgres, true
	}
	return c, c.sqlite, true
}

func (t *translator) cond(e ast.Expr) (string, error) {
	switch e.Kind() {
	case ast.IdentKind:
		c, sqlc, ok := t.col(e.AsIdent())
		if !ok || c.typ != cel.BoolType {
			return "", errUntranslatable
		}
		return "(" + sqlc + " = " + t.arg(true) + ")", nil
	case ast.LiteralKind:
		if b, ok := e.AsLiteral().(types.Bool); ok {
			if b {
				return "(1 = 1)", nil
			}
			return "(1 = 0)", nil
		}
		return "", errUntranslatable
	case ast.CallKind:
	default:
		return "", errUntranslatable
	}
	call := e.AsCall()
	args := call.Args()
	switch fn := call.FunctionName(); fn {
	case operators.LogicalAnd, operators.LogicalOr:
		n0 := len(t.args)
		l, err := t.cond(args[0])
		if err != nil {
			return "", err
		}
		n1 := len(t.args)
		r, err := t.cond(args[1])
		if err != nil {
			return "", err
		}
		op := " AND "
		if fn == operators.LogicalOr {
			op = " OR "
		}
		if strings.Contains(l, "EXISTS (") && !strings.Contains(r, "EXISTS (") {
			// Column conditions first, tag lookups (a probe of
			// contact_tags per row) last: SQLite evaluates the terms in
			// order and skips the rest once one is false. The operands
			// commute (SQL conditions have no errors; CEL's && and ||
			// commute too).
			l, r = r, l
			t.args = append(t.args[:n0], append(slices.Clone(t.args[n1:]), t.args[n0:n1]...)...)
		}
		return "(" + l + op + r + ")", nil
	case operators.LogicalNot:
		x, err := t.cond(args[0])
		if err != nil {
			return "", err
		}
		return "(NOT " + x + ")", nil
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		if w, ok := t.emailEquals(fn, args); ok {
			return w, nil
		}
		l, lt, err := t.operand(args[0])
		if err != nil {
			return "", err
		}
		r, rt, err := t.operand(args[1])
		if err != nil {
			return "", err
		}
		op := map[string]string{operators.Equals: "=", operators.NotEquals: "<>", operators.Less: "<", operators.LessEquals: "<=", operators.Greater: ">", operators.GreaterEquals: ">="}[fn]
		if t.d == postgres && (lt == cel.StringType || rt == cel.StringType) {
			// CEL orders strings by code point, as the C collation does.
			l += ` COLLATE "C"`
		}
		return "(" + l + " " + op + " " + r + ")", nil
	case "contains", "startsWith", "endsWith":
		// s.contains("x") and friends on a string variable: a contact
		// search ("email.contains(...)") must not scan in Go. Both
		// dialects compare characters exactly (case-sensitive), as CEL.
		if !call.IsMemberFunction() || len(args) != 1 {
			return "", errUntranslatable
		}
		l, lt, err := t.operand(call.Target())
		if err != nil || lt != cel.StringType || call.Target().Kind() != ast.IdentKind {
			return "", errUntranslatable
		}
		v, err := t.constant(args[0])
		if err != nil {
			return "", err
		}
		if _, ok := v.(string); !ok {
			return "", errUntranslatable
		}
		switch {
		case fn == "contains" && t.d == postgres:
			return "(strpos(" + l + ", " + t.arg(v) + ") > 0)", nil
		case fn == "contains":
			return "(instr(" + l + ", " + t.arg(v) + ") > 0)", nil
		case fn == "startsWith":
			return "(substr(" + l + ", 1, length(" + t.arg(v) + ")) = " + t.arg(v) + ")", nil
		default: // endsWith
			return "(length(" + l + ") >= length(" + t.arg(v) + ") AND substr(" + l + ", length(" + l + ") - length(" + t.arg(v) + ") + 1) = " + t.arg(v) + ")", nil
		}
	case operators.In:
		if args[1].Kind() == ast.IdentKind && args[1].AsIdent() == "tags" {
			v, err := t.constant(args[0])
			if err != nil {
				return "", err
			}
			if _, ok := v.(string); !ok {
				return "", errUntranslatable
			}
			return "EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag = " + t.arg(v) + ")", nil
		}
		if args[1].Kind() == ast.ListKind {
			l, _, err := t.operand(args[0])
			if err != nil {
				return "", err
			}
			elems := args[1].AsList().Elements()
			if len(elems) == 0 {
				return "(1 = 0)", nil
			}
			var ph []string
			for _, el := range elems {
				v, err := t.constant(el)
				if err != nil {
					return "", err
				}
				ph = append(ph, t.arg(v))
			}
			return "(" + l + " IN (" + strings.Join(ph, ", ") + "))", nil
		}
	}
	return "", errUntranslatable
}

// emailEquals translates email == "x" (either way round) to a condition
// the address index serves: a contact's email_key is its email
// lower-cased (NormalizeEmail), so email = x implies email_key = lower(x)
// for every contact but the erased, whose key is a hash and whose address
// is erased-N@erased.invalid; an x of that domain keeps the plain
// comparison. A contact search by whole address is then an index lookup,
// not a scan.
func (t *translator) emailEquals(fn string, args []ast.Expr) (string, bool) {
	if fn != operators.Equals {
		return "", false
	}
	for i := range 2 {
		if args[i].Kind() != ast.IdentKind || args[i].AsIdent() != "email" {
			continue
		}
		v, err := t.constant(args[1-i])
		x, ok := v.(string)
		if err != nil || !ok || strings.HasSuffix(strings.ToLower(x), "@erased.invalid") {
			return "", false
		}
		return "(c.email_key = " + t.arg(strings.ToLower(x)) + " AND c.email = " + t.arg(x) + ")", true
	}
	return "", false
}

// operand is a variable or a constant as SQL, with its CEL type when known.
func (t *translator) operand(e ast.Expr) (string, *cel.Type, error) {
	if e.Kind() == ast.IdentKind {
		if c, sqlc, ok := t.col(e.AsIdent()); ok {
			return sqlc, c.typ, nil
		}
	}
	v, err := t.constant(e)
	if err != nil {
		return "", nil, err
	}
	var typ *cel.Type
	if _, ok := v.(string); ok {
		typ = cel.StringType
	}
	return t.arg(v), typ, nil
}

func (t *translator) arg(v any) string {
	if b, ok := v.(bool); ok && t.d == sqlite {
		v = 0
		if b {
			v = 1
		}
	}
	t.args = append(t.args, v)
	return "?"
}

// constant evaluates a constant sub-expression to a SQL argument:
// timestamps become Unix seconds (fractional when not whole).
func (t *translator) constant(e ast.Expr) (any, error) {
	v, err := t.value(e)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case types.String:
		return string(x), nil
	case types.Int:
		return int64(x), nil
	case types.Double:
		return float64(x), nil
	case types.Bool:
		return bool(x), nil
	case types.Timestamp:
		if x.Nanosecond() == 0 {
			return x.Unix(), nil
		}
		return float64(x.UnixNano()) / 1e9, nil
	}
	return nil, errUntranslatable
}

func (t *translator) value(e ast.Expr) (ref.Val, error) {
	switch e.Kind() {
	case ast.LiteralKind:
		return e.AsLiteral(), nil
	case ast.IdentKind:
		if e.AsIdent() == "now" {
			return types.Timestamp{Time: t.now}, nil
		}
		return nil, errUntranslatable
	case ast.CallKind:
	default:
		return nil, errUntranslatable
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case "duration", "timestamp":
		if len(args) != 1 || call.IsMemberFunction() {
			return nil, errUntranslatable
		}
		v, err := t.value(args[0])
		if err != nil {
			return nil, err
		}
		s, ok := v.(types.String)
		if !ok {
			return nil, errUntranslatable
		}
		if call.FunctionName() == "duration" {
			d, err := time.ParseDuration(string(s))
			if err != nil {
				return nil, errUntranslatable
			}
			return types.Duration{Duration: d}, nil
		}
		ts, err := time.Parse(time.RFC3339, string(s))
		if err != nil {
			return nil, errUntranslatable
		}
		return types.Timestamp{Time: ts.UTC()}, nil
	case operators.Add, operators.Subtract:
		l, err := t.value(args[0])
		if err != nil {
			return nil, err
		}
		r, err := t.value(args[1])
		if err != nil {
			return nil, err
		}
		ts, ok1 := l.(types.Timestamp)
		d, ok2 := r.(types.Duration)
		if !ok1 || !ok2 {
			return nil, errUntranslatable
		}
		if call.FunctionName() == operators.Subtract {
			return types.Timestamp{Time: ts.Time.Add(-d.Duration)}, nil
		}
		return types.Timestamp{Time: ts.Time.Add(d.Duration)}, nil
	case operators.Negate:
		v, err := t.value(args[0])
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case types.Int:
			return -x, nil
		case types.Double:
			return -x, nil
		}
	}
	return nil, errUntranslatable
}

// activation is the CEL input for one contact: unset values are their
// type's zero value, as in the SQL translation.
func (q *segQuery) activation(c *Contact, a *Audience) map[string]any {
	zeroTS := time.Unix(0, 0).UTC()
	ts := func(t *time.Time) time.Time {
		if t == nil {
			return zeroTS
		}
		return *t
	}
	bday := zeroTS
	if c.Birthday != "" {
		bday, _ = time.Parse(time.DateOnly, c.Birthday)
	}
	age := int64(0)
	if c.Age != nil {
		age = int64(*c.Age)
	}
	act := map[string]any{
		"email": c.Email, "status": string(c.Status), "name": c.Name, "phone": c.Phone, "gender": c.Gender,
		"time_zone": c.TimeZone, "locale": c.Locale, "age": age, "birthday": bday,
		"created_at": c.CreatedAt, "updated_at": c.UpdatedAt, "last_sent": ts(c.LastSent),
		"last_opened": ts(c.LastOpened), "last_clicked": ts(c.LastClicked), "tags": c.Tags, "now": q.now,
	}
	for _, f := range a.Fields {
		v := c.Fields[f.Name]
		switch f.Type {
		case Number:
			n, _ := v.(float64)
			act[f.Name] = n
		case Boolean:
			b, _ := v.(bool)
			act[f.Name] = b
		case Date, DateTime:
			t := zeroTS
			if sv, ok := v.(string); ok {
				if p, err := time.Parse(time.RFC3339, sv); err == nil {
					t = p
				} else if p, err := time.Parse(time.DateOnly, sv); err == nil {
					t = p
				}
			}
			act[f.Name] = t
		default:
			sv, _ := v.(string)
			act[f.Name] = sv
		}
	}
	return act
}

func (q *segQuery) match(c *Contact, a *Audience) (bool, error) {
	out, _, err := q.prg.Eval(q.activation(c, a))
	if err != nil {
		return false, invalid("expression_failed", "segment expression failed on contact %d: %v", c.ID, err)
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

// Count returns the number of the audience's contacts matching expr,
// evaluated now.
func (s *Store) Count(ctx context.Context, audience int64, expr string) (int, error) {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return 0, err
	}
	q, err := s.compile(&a, expr)
	if err != nil {
		return 0, err
	}
	if q.where != "" {
		var n int
		err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM contacts c WHERE c.audience_id = ? AND `+q.where), append([]any{audience}, q.args...)...).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("audience: count: %w", err)
		}
		return n, nil
	}
	return s.countGo(ctx, &a, q)
}

// CountSegments counts the audience's contacts matching each saved
// segment, now, in one pass over the audience: the segments translated to
// SQL are one query with a sum per segment (a count is mostly the scan of
// the table, so n segments cost about one), those evaluated in Go one
// shared scan. A segment that no longer compiles gets its error and the
// others their counts (errs[i] nil).
func (s *Store) CountSegments(ctx context.Context, audience int64, segs []Segment) (counts []int, errs []error, err error) {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return nil, nil, err
	}
	counts, errs = make([]int, len(segs)), make([]error, len(segs))
	var sums []string
	var args []any
	var inSQL []int
	type goSeg struct {
		i int
		q *segQuery
	}
	var inGo []goSeg
	for i, sg := range segs {
		q, err := s.compile(&a, sg.Expression)
		switch {
		case err != nil:
			errs[i] = err
		case q.where != "":
			sums = append(sums, "COALESCE(sum(CASE WHEN "+q.where+" THEN 1 ELSE 0 END), 0)")
			args = append(args, q.args...)
			inSQL = append(inSQL, i)
		default:
			inGo = append(inGo, goSeg{i, q})
		}
	}
	if len(sums) > 0 {
		dest := make([]any, len(inSQL))
		for j, i := range inSQL {
			dest[j] = &counts[i]
		}
		err := s.db.QueryRowContext(ctx, s.q(`SELECT `+strings.Join(sums, ", ")+` FROM contacts c WHERE c.audience_id = ?`), append(args, audience)...).Scan(dest...)
		if err != nil {
			return nil, nil, fmt.Errorf("audience: count: %w", err)
		}
	}
	if len(inGo) > 0 {
		err := s.scanContacts(ctx, &a, 0, func(c *Contact) (bool, error) {
			for _, g := range inGo {
				if errs[g.i] != nil {
					continue
				}
				ok, err := g.q.match(c, &a)
				if err != nil {
					errs[g.i] = err
				} else if ok {
					counts[g.i]++
				}
			}
			return true, nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return counts, errs, nil
}

func (s *Store) countGo(ctx context.Context, a *Audience, q *segQuery) (int, error) {
	n := 0
	err := s.scanGo(ctx, a, q, 0, func(*Contact) bool { n++; return true })
	return n, err
}

// scanGo evaluates q in Go over the audience's contacts with id > after,
// in id order, calling f for each match until it returns false.
func (s *Store) scanGo(ctx context.Context, a *Audience, q *segQuery, after int64, f func(*Contact) bool) error {
	return s.scanContacts(ctx, a, after, func(c *Contact) (bool, error) {
		ok, err := q.match(c, a)
		if err != nil || !ok {
			return err == nil, err
		}
		return f(c), nil
	})
}

// scanContacts calls f for each of the audience's contacts with id >
// after, in id order and pages of 1,000, until f returns false or an
// error.
func (s *Store) scanContacts(ctx context.Context, a *Audience, after int64, f func(*Contact) (bool, error)) error {
	for {
		page, err := s.contacts(ctx, s.db, a.ID, contactSelect+` WHERE c.audience_id = ? AND c.id > ? ORDER BY c.id LIMIT 1000`, a.ID, after)
		if err != nil {
			return err
		}
		for i := range page {
			if more, err := f(&page[i]); err != nil || !more {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// ListOptions page through an audience's contacts.
type ListOptions struct {
	// Segment filters by a CEL expression ("" = every contact).
	Segment string
	// After is the cursor: the id of the last contact of the previous page.
	After int64
	// Limit is the page size (default 100, at most 1000).
	Limit int
}

// ListContacts returns a page of contacts in id order and the cursor of
// the next page (0 when this is the last).
func (s *Store) ListContacts(ctx context.Context, audience int64, o ListOptions) ([]Contact, int64, error) {
	if o.Limit <= 0 {
		o.Limit = 100
	}
	o.Limit = min(o.Limit, 1000)
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return nil, 0, err
	}
	var out []Contact
	if o.Segment == "" {
		out, err = s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.id > ? ORDER BY c.id LIMIT ?`, audience, o.After, o.Limit+1)
	} else {
		var q *segQuery
		q, err = s.compile(&a, o.Segment)
		if err != nil {
			return nil, 0, err
		}
		if q.where != "" {
			out, err = s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.id > ? AND `+q.where+` ORDER BY c.id LIMIT ?`,
				append(append([]any{audience, o.After}, q.args...), o.Limit+1)...)
		} else {
			err = s.scanGo(ctx, &a, q, o.After, func(c *Contact) bool {
				out = append(out, *c)
				return len(out) <= o.Limit
			})
		}
	}
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(out) > o.Limit {
		out = out[:o.Limit]
		next = out[len(out)-1].ID
	}
	if out == nil {
		out = []Contact{}
	}
	return out, next, nil
}

// CheckExpression compiles expr against the audience's fields.
func (s *Store) CheckExpression(ctx context.Context, audience int64, expr string) error {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return err
	}
	_, err = s.compile(&a, expr)
	return err
}

// CreateSegment saves a named expression after checking it compiles.
func (s *Store) CreateSegment(ctx context.Context, audience int64, name, expr string) (Segment, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Segment{}, invalid("invalid_segment", "segment name must be 1 to 200 bytes")
	}
	if err := s.CheckExpression(ctx, audience, expr); err != nil {
		return Segment{}, err
	}
	sg := Segment{AudienceID: audience, Name: name, Expression: expr, CreatedAt: time.Unix(s.now(), 0).UTC()}
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO segments (audience_id, name, expression, created_at) VALUES (?,?,?,?) ON CONFLICT (audience_id, name) DO NOTHING RETURNING id`),
		audience, name, expr, sg.CreatedAt.Unix()).Scan(&sg.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Segment{}, conflict("segment_exists", "segment %q exists", name)
	}
	if err != nil {
		return Segment{}, fmt.Errorf("audience: segment: %w", err)
	}
	return sg, nil
}

// Segments lists an audience's saved segments.
func (s *Store) Segments(ctx context.Context, audience int64) ([]Segment, error) {
	return s.segments(ctx, `WHERE audience_id = ? ORDER BY id`, audience)
}

// SegmentByID returns a saved segment.
func (s *Store) SegmentByID(ctx context.Context, audience, id int64) (Segment, error) {
	sg, err := s.segments(ctx, `WHERE audience_id = ? AND id = ?`, audience, id)
	if err != nil {
		return Segment{}, err
	}
	if len(sg) == 0 {
		return Segment{}, notFound("no segment %d in audience %d", id, audience)
	}
	return sg[0], nil
}

// DeleteSegment deletes a saved segment.
func (s *Store) DeleteSegment(ctx context.Context, audience, id int64) error {
	res, err := s.exec(ctx, s.db, `DELETE FROM segments WHERE audience_id = ? AND id = ?`, audience, id)
	if err != nil {
		return fmt.Errorf("audience: segment: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("no segment %d in audience %d", id, audience)
	}
	return nil
}

func (s *Store) segments(ctx context.Context, where string, args ...any) ([]Segment, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, audience_id, name, expression, created_at FROM segments `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("audience: segments: %w", err)
	}
	defer rows.Close()
	out := []Segment{}
	for rows.Next() {
		var sg Segment
		var created int64
		if err := rows.Scan(&sg.ID, &sg.AudienceID, &sg.Name, &sg.Expression, &created); err != nil {
			return nil, fmt.Errorf("audience: segments: %w", err)
		}
		sg.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, sg)
	}
	return out, rows.Err()
}
