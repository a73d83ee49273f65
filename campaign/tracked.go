package campaign

// Tracking precompiled into the template. Rewriting every message's
// rendered HTML with tracking.RewriteHTML tokenises ~20 KB per recipient
// (it was a quarter of a send's CPU). The links of a template are the
// same for every recipient up to the placeholders inside them, so a send
// rewrites the template once instead: tracking.RewriteHTML and
// tracking.RewriteText run over the template source, every tracked link
// becomes a placeholder %__petrel_h<n>% (HTML) or %__petrel_t<n>% (text)
// whose own target template is kept, and the open pixel a placeholder
// %__petrel_pixel%. Rendering a message then only concatenates; the value
// of a link placeholder is the recipient's rendered target, signed into a
// click token, exactly the token the per-message rewrite would make (same
// link numbers, same targets, the unsubscribe link left alone).
//
// Where the template's links could differ per recipient beyond the
// rendered target (an href that is a placeholder, a text URL a value may
// end early or a value that is itself a URL), the send falls back to the
// per-message rewrite (Tracking.apply) for that template or part, so the
// result never differs from it.

import (
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/tracking"
)

const (
	linkMarker  = "__petrel_"
	pixelMarker = "%" + linkMarker + "pixel%"
	unsubMarker = "%" + linkMarker + "u%"
	// unsubSentinel stands for %unsubscribe_url% while the template is
	// rewritten: an http(s) unsubscribe link is a link to the rewrite
	// (it takes a link number, and is then left as it is).
	unsubSentinel = "https://unsubscribe.petrel.invalid/__petrel_u"
)

// trackedTemplate is a template with its tracking precompiled.
type trackedTemplate struct {
	tpl *Compiled
	// html and text are the targets of the tracked links, by number.
	html, text []part
	// base is the public base URL of the tracking routes.
	base string
	t    *Tracking
}

// markerFields accepts the template's own fields and the markers.
type markerFields struct{ Fields }

func (m markerFields) Known(name string) bool {
	return strings.HasPrefix(name, linkMarker) || m.Fields == nil || m.Fields.Known(name)
}

// precompile returns tpl with the tracking of t (for mail from from)
// compiled in, or nil when the send must rewrite each message instead
// (or is not tracked at all). unsubHTTP says the send's unsubscribe
// links are http(s) URLs (not mailto:).
func (t *Tracking) precompile(tpl *Compiled, from string, unsubHTTP bool) *trackedTemplate {
	if t == nil || t.Sign == nil || !t.Opens && !t.Clicks || tpl == nil {
		return nil
	}
	base := strings.TrimRight(t.BaseURL(domainOf(from)), "/")
	if base == "" {
		return nil
	}
	tt := &trackedTemplate{base: base, t: t}
	c := tpl.src
	if strings.Contains(c.HTML+c.Text, unsubSentinel) {
		return nil
	}
	// An HTML part that may render empty gets no pixel from the
	// per-message rewrite (no part at all), while a precompiled pixel
	// would make one: such templates (nothing but placeholders and
	// blanks) stay per-message (FuzzPrecompiledTracking found "%A%").
	if tpl.hasHTML && !hasLiteral(tpl.htmlBefore) && !hasLiteral(tpl.htmlAfter) {
		return nil
	}
	// A placeholder in a tag's markup outside a quoted attribute value
	// (an unquoted href, an attribute name): its value can change how the
	// rendered tag parses in the per-message rewrite (a blank ends an
	// unquoted value, the rest becomes another attribute), which a
	// precompiled template cannot follow. Found by FuzzPrecompiledTracking.
	if placeholderInMarkup(c.HTML) {
		return nil
	}
	if unsubHTTP {
		c.HTML = replacePlaceholder(c.HTML, "unsubscribe_url", unsubSentinel)
		c.Text = replacePlaceholder(c.Text, "unsubscribe_url", unsubSentinel)
	}
	var bad bool
	compileLink := func(kind string, links *[]part) tracking.LinkFunc {
		return func(n int, href string) (string, bool) {
			if href == unsubSentinel {
				if kind == "h" {
					// Left as it is (the raw tag, as the per-message
					// rewrite leaves the rendered one); only its number
					// is taken. FuzzPrecompiledTracking found a rewritten
					// tag's spelling differing ("<A" became "<a").
					return "", false
				}
				return unsubMarker, true
			}
			p, _, err := compilePart("html", href, tpl.fields)
			if err != nil {
				bad = true // a placeholder cut by the link's end
				return "", false
			}
			for len(*links) <= n {
				*links = append(*links, part{})
			}
			(*links)[n] = p
			return "%" + linkMarker + kind + strconv.Itoa(n) + "%", true
		}
	}
	if c.HTML != "" {
		if t.Clicks {
			if !linksFixed(c.HTML) {
				return nil
			}
		}
		pixel := ""
		if t.Opens {
			pixel = pixelMarker
		}
		link := compileLink("h", &tt.html)
		if !t.Clicks {
			link = func(int, string) (string, bool) { return "", false }
		}
		c.HTML = tracking.RewriteHTML(c.HTML, link, pixel)
	}
	if t.Clicks && c.Text != "" {
		c.Text = tracking.RewriteText(c.Text, compileLink("t", &tt.text))
	}
	if bad {
		return nil
	}
	// The sentinel where it was no rewritten link is the placeholder again.
	c.HTML = strings.ReplaceAll(c.HTML, unsubSentinel, "%unsubscribe_url%")
	c.Text = strings.ReplaceAll(c.Text, unsubSentinel, "%unsubscribe_url%")
	var err error
	if tt.tpl, err = Compile(c, markerFields{tpl.fields}); err != nil {
		return nil
	}
	tt.tpl.Warnings = tpl.Warnings
	return tt
}

// linksFixed reports whether every <a>/<area> href of src is trackable or
// not independently of the values rendered into it: it starts with its
// scheme (or is no link at all without a placeholder at its start), or
// it is the unsubscribe link, which is never tracked.
func linksFixed(src string) bool {
	ok := true
	eachTag(src, func(name string, attrs [][2]string) {
		if name != "a" && name != "area" {
			return
		}
		for _, kv := range attrs {
			if kv[0] != "href" {
				continue
			}
			h := strings.TrimSpace(kv[1])
			// Whether a link is tracked depends on its first 8 bytes
			// only (tracking's "http://x" / "https://"): they must
			// hold no placeholder.
			if h != "%unsubscribe_url%" && strings.Contains(h[:min(8, len(h))], "%") || !hasHTTPScheme(h) && strings.Contains(h, "%") && h != "%unsubscribe_url%" {
				ok = false
			}
			return // the first href is the link
		}
	})
	return ok
}

// hasHTTPScheme reports whether s starts with http:// or https://
// (case-insensitive), as tracking counts a link trackable.
func hasHTTPScheme(s string) bool {
	if len(s) < 8 {
		return false
	}
	l := strings.ToLower(s[:8])
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// render renders the tracked message of recipient r (message is its
// idempotency key, unsub its unsubscribe link); fallback renders the
// untracked text part when the text links could not be precompiled for
// this recipient. ok false means an HTML link of this recipient is one
// the per-message rewrite leaves as it is (its target is the unsubscribe
// link, or no token can carry it) while the precompiled tag was
// rewritten: the caller renders this recipient per message instead.
func (tt *trackedTemplate) render(vals Values, campaign, message string, r Recipient, stream, unsub string, now time.Time, fallback func() string) (_ Rendered, ok bool) {
	v := &trackedValues{Values: vals, tt: tt, unsub: unsub,
		tok: tracking.Token{Campaign: campaign, Message: message, Recipient: strconv.FormatInt(r.ID, 10),
			Sent: now.Unix(), Provider: events.Provider("", r.Email), Stream: stream}}
	out := tt.tpl.renderWith(v, v.textEscape)
	if v.textUnsafe && tt.t.Clicks {
		// A value would have changed the text's links: rewrite this
		// recipient's text part as a whole, as apply would.
		out.Text = tracking.RewriteText(fallback(), v.sign)
	}
	return out, !v.htmlUnsafe
}

// trackedValues are a recipient's values plus the link and pixel
// placeholders of a tracked template.
type trackedValues struct {
	Values
	tt    *trackedTemplate
	unsub string
	tok   tracking.Token
	// textUnsafe is set when a text value is or contains a URL, or a
	// text link target contains what ends a URL in text.
	textUnsafe bool
	// marker is set while a link value is written (it is a URL by
	// design).
	marker bool
	// htmlUnsafe is set when an HTML link's target is not signed.
	htmlUnsafe bool
}

func (v *trackedValues) Value(field string) (string, bool) {
	rest, ok := strings.CutPrefix(field, linkMarker)
	if !ok {
		if v.Values == nil {
			return "", false
		}
		return v.Values.Value(field)
	}
	if rest == "u" {
		v.marker = true
		return v.unsub, true
	}
	if rest == "pixel" {
		o := v.tok
		o.Kind = tracking.Open
		s, err := v.tt.t.Sign(o)
		if err != nil {
			return "", true // apply fails the message; here the pixel is left out
		}
		return v.tt.base + "/t/o/" + s + ".gif", true
	}
	links, esc := v.tt.html, escaper(identity)
	if rest[0] == 't' {
		links, esc = v.tt.text, textSafe
	}
	n, err := strconv.Atoi(rest[1:])
	if err != nil || n >= len(links) {
		return "", true
	}
	var b strings.Builder
	b.Grow(links[n].size + 32)
	links[n].renderTo(&b, v.Values, esc)
	raw := b.String()
	href := strings.TrimSpace(raw)
	// In text, whether and where a link is found depends on its bytes
	// (a value with a blank ends it early, "http://!" is no link at all):
	// a text link with a value in it is rewritten with the whole part,
	// as the per-message rewrite does.
	if rest[0] == 't' && hasField(links[n]) {
		v.textUnsafe = true
	}
	v.marker = true
	if s, ok := v.sign(n, href); ok {
		return s, true
	}
	if rest[0] == 'h' {
		v.htmlUnsafe = true
	}
	return href, true
}

// sign is the click link of the n-th link to href (a tracking.LinkFunc).
func (v *trackedValues) sign(n int, href string) (string, bool) {
	if v.unsub != "" && href == v.unsub {
		return "", false
	}
	c := v.tok
	c.Kind, c.Link, c.URL = tracking.Click, n, href
	s, err := v.tt.t.Sign(c)
	if err != nil {
		return "", false // a link no token can carry (over 4 KiB) stays as it is
	}
	return v.tt.base + "/t/c/" + s, true
}

// textEscape writes a text-part value; a value that contains a URL marks
// the text for the per-recipient rewrite (it would be tracked there).
func (v *trackedValues) textEscape(b *strings.Builder, s string) {
	if v.marker {
		v.marker = false
	} else if !v.textUnsafe && strings.Contains(s, "://") {
		l := strings.ToLower(s)
		v.textUnsafe = strings.Contains(l, "http://") || strings.Contains(l, "https://")
	}
	textSafe(b, s)
}

func identity(b *strings.Builder, s string) { b.WriteString(s) }

// hasLiteral reports whether p has literal text other than blanks.
func hasLiteral(p part) bool {
	for _, sg := range p.segs {
		if sg.field == "" && strings.TrimSpace(sg.lit) != "" {
			return true
		}
	}
	return false
}

// placeholderInMarkup reports whether html has a '%' inside a tag but
// not inside a quoted attribute value (after '='). It errs towards yes
// (a '<' in text starts a "tag"): then the template is only not
// precompiled.
func placeholderInMarkup(html string) bool {
	inTag, afterEq := false, false
	var quote byte
	for i := 0; i < len(html); i++ {
		c := html[i]
		switch {
		case !inTag:
			if c == '<' {
				inTag, afterEq = true, false
			}
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '>':
			inTag = false
		case c == '=':
			afterEq = true
		case (c == '"' || c == '\'') && afterEq:
			quote, afterEq = c, false
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
		case c == '%':
			return true
		default:
			afterEq = false
		}
	}
	return false
}

// hasField reports whether p has a placeholder.
func hasField(p part) bool {
	for _, sg := range p.segs {
		if sg.field != "" {
			return true
		}
	}
	return false
}

// replacePlaceholder returns src with each placeholder %field% replaced
// by with (which holds no '%'), as compilePart reads the placeholders:
// "%%" is a literal percent sign, so "%%unsubscribe_url%" holds none
// (FuzzPrecompiledTracking found a plain string replacement taking it
// for one). The rest is written back in template syntax (a literal '%'
// as "%%"), the same template. src is a compiled template's part.
func replacePlaceholder(src, field, with string) string {
	if !strings.Contains(src, "%"+field) {
		return src
	}
	p, _, err := compilePart("", src, nil)
	if err != nil {
		return src // not a compiled part: nothing is replaced
	}
	var b strings.Builder
	b.Grow(len(src) + len(with))
	for _, sg := range p.segs {
		switch {
		case sg.field == "":
			b.WriteString(strings.ReplaceAll(sg.lit, "%", "%%"))
		case sg.field == field:
			b.WriteString(with) // a fallback of a field that always has a value
		default:
			b.WriteString("%" + sg.field)
			if sg.fallback != "" {
				b.WriteString("|" + sg.fallback)
			}
			b.WriteString("%")
		}
	}
	return b.String()
}
