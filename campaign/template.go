package campaign

import (
	"errors"
	"fmt"
	"html"
	"slices"
	"strings"
	"unicode/utf8"
)

// A template body is literal text with placeholders:
//
//	%field%            the contact's (or message's) value of field
//	%field|fallback%   the value, or fallback when it is empty or missing
//	%%                 a literal percent sign
//
// A field name starts with a letter or underscore and continues with
// letters, digits, underscores and dots (%event.cart_url%). A '%' that is
// not followed by a name start is literal ("50% off", "100%"), so ordinary
// text needs no escaping; a '%' followed by a name that is never closed on
// the same line is an error ("unbalanced %"), as is a name the template's
// field set does not declare. Both are found when the template is saved
// (Compile), never at send time.

// MaxTemplateSize bounds one template part (subject, HTML or text).
const MaxTemplateSize = 2 << 20

// maxFallback bounds a %field|fallback% fallback.
const maxFallback = 256

// Pos is a position in a template part, 1-based.
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// SyntaxError is a template error with its position.
type SyntaxError struct {
	Part string // "subject", "preheader", "html" or "text"
	Pos  Pos
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s %s: %s", e.Part, e.Pos, e.Msg) }

// Fields says which placeholder names a template may use.
type Fields interface {
	// Known reports whether name is a declared field.
	Known(name string) bool
}

// FieldSet is a Fields from a fixed list of names.
type FieldSet map[string]bool

// Known implements Fields.
func (s FieldSet) Known(name string) bool { return s[name] }

// NewFieldSet returns the set of names.
func NewFieldSet(names ...string) FieldSet {
	s := FieldSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

// segment is one piece of a compiled part: a literal, or a placeholder.
type segment struct {
	lit      string
	field    string // "" for a literal
	fallback string
}

// part is one compiled template part.
type part struct {
	segs []segment
	size int // literal bytes, for pre-sizing the output
}

// Values gives a placeholder's value; ok false means missing.
type Values interface {
	Value(field string) (string, bool)
}

// Map is Values from a map.
type Map map[string]string

// Value implements Values.
func (m Map) Value(field string) (string, bool) { v, ok := m[field]; return v, ok }

func isNameStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isNameByte(c byte) bool { return isNameStart(c) || '0' <= c && c <= '9' || c == '.' }

// compilePart parses src; fields nil accepts every name.
func compilePart(name, src string, fields Fields) (part, []string, error) {
	if len(src) > MaxTemplateSize {
		return part{}, nil, &SyntaxError{Part: name, Pos: Pos{1, 1}, Msg: fmt.Sprintf("larger than %d bytes", MaxTemplateSize)}
	}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return part{}, nil, &SyntaxError{Part: name, Pos: position(src, i), Msg: "invalid UTF-8"}
	}
	var p part
	var used []string
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			p.segs = append(p.segs, segment{lit: lit.String()})
			p.size += lit.Len()
			lit.Reset()
		}
	}
	for i := 0; i < len(src); {
		j := strings.IndexByte(src[i:], '%')
		if j < 0 {
			lit.WriteString(src[i:])
			break
		}
		lit.WriteString(src[i : i+j])
		i += j
		switch {
		case i+1 < len(src) && src[i+1] == '%':
			lit.WriteByte('%')
			i += 2
			continue
		case i+1 >= len(src) || !isNameStart(src[i+1]):
			lit.WriteByte('%') // "50% off": literal
			i++
			continue
		}
		start := i
		k := i + 1
		for k < len(src) && isNameByte(src[k]) {
			k++
		}
		field := src[i+1 : k]
		fallback := ""
		if k < len(src) && src[k] == '|' {
			end := k + 1
			for end < len(src) && src[end] != '%' && src[end] != '\n' && src[end] != '\r' {
				end++
			}
			if end >= len(src) || src[end] != '%' {
				return part{}, nil, &SyntaxError{Part: name, Pos: position(src, start), Msg: fmt.Sprintf("unbalanced %%: %%%s| is not closed on its line", field)}
			}
			fallback = src[k+1 : end]
			if len(fallback) > maxFallback {
				return part{}, nil, &SyntaxError{Part: name, Pos: position(src, start), Msg: fmt.Sprintf("fallback of %%%s%% longer than %d bytes", field, maxFallback)}
			}
			k = end
		}
		if k >= len(src) || src[k] != '%' {
			return part{}, nil, &SyntaxError{Part: name, Pos: position(src, start), Msg: fmt.Sprintf("unbalanced %%: %%%s is not closed (write %%%% for a literal %%)", field)}
		}
		if strings.HasSuffix(field, ".") || strings.Contains(field, "..") {
			return part{}, nil, &SyntaxError{Part: name, Pos: position(src, start), Msg: fmt.Sprintf("invalid field name %q", field)}
		}
		if fields != nil && !fields.Known(field) {
			return part{}, nil, &SyntaxError{Part: name, Pos: position(src, start), Msg: fmt.Sprintf("unknown field %%%s%%", field)}
		}
		flush()
		p.segs = append(p.segs, segment{field: field, fallback: fallback})
		if !slices.Contains(used, field) {
			used = append(used, field)
		}
		i = k + 1
	}
	flush()
	return p, used, nil
}

// position converts a byte offset into a line:column (column in runes).
func position(src string, off int) Pos {
	line := 1 + strings.Count(src[:off], "\n")
	ls := strings.LastIndexByte(src[:off], '\n') + 1
	return Pos{Line: line, Col: 1 + utf8.RuneCountInString(src[ls:off])}
}

// escaper says how a value is made safe for the part it goes into.
type escaper func(*strings.Builder, string)

func htmlEscape(b *strings.Builder, v string) {
	if strings.IndexAny(v, `<>&'"`) < 0 {
		b.WriteString(v) // most values: nothing to escape, no allocation
		return
	}
	b.WriteString(html.EscapeString(v))
}

// plain reports whether v has no control characters (nothing for
// headerSafe or textSafe to change).
func plain(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// headerSafe drops CR, LF and other control characters so a value can
// never end the header field or start another one.
func headerSafe(b *strings.Builder, v string) {
	if plain(v) {
		b.WriteString(v)
		return
	}
	for _, r := range v {
		switch {
		case r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
}

// textSafe keeps the value but drops NUL and normalises line ends to LF
// (the MIME writer emits CRLF).
func textSafe(b *strings.Builder, v string) {
	if plain(v) {
		b.WriteString(v)
		return
	}
	for _, r := range v {
		if r == 0 || r == '\r' {
			continue
		}
		b.WriteRune(r)
	}
}

func (p part) render(vals Values, esc escaper) string {
	var b strings.Builder
	b.Grow(p.size + 64*len(p.segs))
	p.renderTo(&b, vals, esc)
	return b.String()
}

func (p part) renderTo(b *strings.Builder, vals Values, esc escaper) {
	for _, s := range p.segs {
		if s.field == "" {
			b.WriteString(s.lit)
			continue
		}
		v, ok := "", false
		if vals != nil {
			v, ok = vals.Value(s.field)
		}
		if !ok || v == "" {
			v = s.fallback
		}
		esc(b, v)
	}
}

// ErrEmptyTemplate is returned by Compile when there is neither an HTML
// nor a text body.
var ErrEmptyTemplate = errors.New("campaign: template has neither an HTML nor a text body")

// Content is the editable content of one template version.
type Content struct {
	Subject   string `json:"subject"`
	Preheader string `json:"preheader,omitempty"`
	HTML      string `json:"html,omitempty"`
	// Text is the plain-text body; "" means generated from HTML.
	Text string `json:"text,omitempty"`
}

// Compiled is a checked template, ready to render many times
// concurrently.
type Compiled struct {
	subject, preheader, text part
	// html is the HTML body split where the hidden preheader block goes
	// (right after the <body> start tag), found once at Compile.
	htmlBefore, htmlAfter part
	hasHTML               bool
	// Fields lists every placeholder name used, in first-use order.
	Fields []string
	// Warnings are problems that do not stop saving (script tags,
	// javascript: links, ...), from CheckHTML.
	Warnings []string
	// src is the content compiled (Text generated when it was missing)
	// and fields what it was checked against: the tracked variant of
	// the template (tracked.go) is compiled from them.
	src    Content
	fields Fields
}

// Compile checks c against fields (nil accepts any name) and prepares it
// for rendering. A text body missing while HTML is present is generated
// from the HTML (placeholders kept).
func Compile(c Content, fields Fields) (*Compiled, error) {
	if strings.TrimSpace(c.HTML) == "" && strings.TrimSpace(c.Text) == "" {
		return nil, ErrEmptyTemplate
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		return nil, &SyntaxError{Part: "subject", Pos: position(c.Subject, strings.IndexAny(c.Subject, "\r\n")), Msg: "line break in the subject"}
	}
	t := &Compiled{}
	var used []string
	add := func(u []string) {
		for _, f := range u {
			if !slices.Contains(used, f) {
				used = append(used, f)
			}
		}
	}
	var err error
	var u []string
	if t.subject, u, err = compilePart("subject", c.Subject, fields); err != nil {
		return nil, err
	}
	add(u)
	if t.preheader, u, err = compilePart("preheader", c.Preheader, fields); err != nil {
		return nil, err
	}
	add(u)
	if c.HTML != "" {
		if t.htmlAfter, u, err = compilePart("html", c.HTML, fields); err != nil {
			return nil, err
		}
		add(u)
		t.hasHTML = true
		if off := bodyContentOffset(c.HTML); off > 0 {
			before, _, err1 := compilePart("html", c.HTML[:off], fields)
			after, _, err2 := compilePart("html", c.HTML[off:], fields)
			if err1 == nil && err2 == nil { // else a placeholder spans the tag: preheader goes first
				t.htmlBefore, t.htmlAfter = before, after
			}
		}
		t.Warnings = CheckHTML(c.HTML)
	}
	text := c.Text
	if strings.TrimSpace(text) == "" {
		text = HTMLToText(c.HTML)
	}
	if t.text, u, err = compilePart("text", text, fields); err != nil {
		return nil, err
	}
	add(u)
	t.Fields = used
	t.src, t.fields = c, fields
	t.src.Text = text
	return t, nil
}

// Rendered is a template rendered for one recipient.
type Rendered struct {
	Subject string `json:"subject"`
	// Preheader is the preview text; it is already inside HTML, hidden.
	Preheader string `json:"preheader,omitempty"`
	HTML      string `json:"html,omitempty"`
	Text      string `json:"text"`
}

// Render fills the placeholders from vals: HTML-escaped in the HTML part,
// header-safe in the subject and preheader, as given in the text part.
// The preheader is placed, hidden, at the top of the HTML body.
func (t *Compiled) Render(vals Values) Rendered { return t.renderWith(vals, textSafe) }

// renderWith is Render with the text part's values written by textEsc.
func (t *Compiled) renderWith(vals Values, textEsc escaper) Rendered {
	r := Rendered{
		Subject:   t.subject.render(vals, headerSafe),
		Preheader: t.preheader.render(vals, headerSafe),
		Text:      t.text.render(vals, textEsc),
	}
	if t.hasHTML {
		var b strings.Builder
		b.Grow(t.htmlBefore.size + t.htmlAfter.size + 64*(len(t.htmlBefore.segs)+len(t.htmlAfter.segs)) + 256)
		t.htmlBefore.renderTo(&b, vals, htmlEscape)
		if r.Preheader != "" {
			b.WriteString(preheaderOpen)
			htmlEscape(&b, r.Preheader)
			b.WriteString(preheaderClose)
		}
		t.htmlAfter.renderTo(&b, vals, htmlEscape)
		r.HTML = b.String()
	}
	return r
}
