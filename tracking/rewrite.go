package tracking

import (
	"strings"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// NoTrackAttr on an <a> or <area> element keeps that link untracked; the
// attribute is removed from the sent message. SendGrid's
// clicktracking="off" is honoured too.
const NoTrackAttr = "data-petrel-notrack"

// LinkFunc returns the tracked URL for the n-th tracked link (0-based, in
// document order, HTML and text parts numbered separately) whose target
// is href; ok false leaves the link as it is.
type LinkFunc func(n int, href string) (tracked string, ok bool)

// trackable reports whether href is an absolute http(s) link worth
// tracking (not mailto:, tel:, fragments, or an unrendered placeholder).
func trackable(href string) bool {
	h := strings.TrimSpace(href)
	if len(h) < 8 {
		return false
	}
	l := strings.ToLower(h[:8])
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// RewriteHTML rewrites the href of every trackable <a> and <area> in src
// through link, and, when pixelURL is not "", adds the open pixel just
// before </body> (or at the end). Everything else is copied byte for byte
// from the tokenizer's raw tokens, so the sender's markup is kept; a
// rewritten tag is re-serialised by x/net/html with its attributes
// escaped.
func RewriteHTML(src string, link LinkFunc, pixelURL string) string {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	b.Grow(len(src) + len(src)/8 + 256)
	n := 0
	pixelDone := pixelURL == ""
	pixel := func() {
		if !pixelDone {
			b.WriteString(`<img src="` + xhtml.EscapeString(pixelURL) + `" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`)
			pixelDone = true
		}
	}
	for {
		tt := z.Next()
		raw := z.Raw()
		if tt == xhtml.ErrorToken {
			b.Write(raw) // an unterminated tag at EOF: keep its bytes
			break
		}
		switch tt {
		case xhtml.EndTagToken:
			if name, _ := z.TagName(); atom.Lookup(name) == atom.Body {
				pixel()
			}
		case xhtml.StartTagToken, xhtml.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if a := atom.Lookup(name); (a == atom.A || a == atom.Area) && hasAttr {
				tok := xhtml.Token{Type: tt, DataAtom: a, Data: a.String()}
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					tok.Attr = append(tok.Attr, xhtml.Attribute{Key: string(k), Val: string(v)})
				}
				if out, changed := rewriteTag(&tok, link, &n); changed {
					b.WriteString(out)
				} else {
					b.Write(raw)
				}
				continue
			}
		}
		b.Write(raw)
	}
	pixel()
	return b.String()
}

// rewriteTag rewrites one <a>/<area> start tag; changed false means the
// raw tag is to be copied as it was.
func rewriteTag(tok *xhtml.Token, link LinkFunc, n *int) (string, bool) {
	optOut, hrefAt := false, -1
	kept := tok.Attr[:0:0]
	for _, a := range tok.Attr {
		switch {
		case a.Key == NoTrackAttr, a.Key == "clicktracking" && strings.EqualFold(a.Val, "off"):
			optOut = true
			continue
		case a.Key == "href" && hrefAt < 0:
			hrefAt = len(kept)
		}
		kept = append(kept, a)
	}
	if optOut {
		tok.Attr = kept
		return tok.String(), true // drop the opt-out attribute
	}
	if hrefAt < 0 || !trackable(kept[hrefAt].Val) {
		return "", false
	}
	tracked, ok := link(*n, strings.TrimSpace(kept[hrefAt].Val))
	*n++
	if !ok {
		return "", false
	}
	kept[hrefAt].Val = tracked
	tok.Attr = kept
	return tok.String(), true
}

// RewriteText rewrites every http(s) URL in a plain-text part through
// link. A URL ends at white space, a quote or angle bracket; trailing
// sentence punctuation (.,;:!?) and an unbalanced closing parenthesis or
// bracket are left outside it.
func RewriteText(src string, link LinkFunc) string {
	var b strings.Builder
	b.Grow(len(src) + len(src)/8)
	n := 0
	for i := 0; i < len(src); {
		j := indexURL(src[i:])
		if j < 0 {
			b.WriteString(src[i:])
			break
		}
		j += i
		b.WriteString(src[i:j])
		end := j
		for end < len(src) && !strings.ContainsRune(" \t\r\n\"'<>", rune(src[end])) {
			end++
		}
		u := trimURL(src[j:end])
		if tracked, ok := link(n, u); ok {
			b.WriteString(tracked)
		} else {
			b.WriteString(u)
		}
		n++
		i = j + len(u)
	}
	return b.String()
}

// indexURL returns the offset of the first "http://" or "https://" in s
// (case-insensitive), or -1.
func indexURL(s string) int {
	for i := 0; i+7 <= len(s); i++ {
		c := s[i] | 0x20
		if c != 'h' {
			continue
		}
		rest := strings.ToLower(s[i:min(len(s), i+8)])
		if strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://") {
			return i
		}
	}
	return -1
}

func trimURL(u string) string {
	for len(u) > 0 {
		last := u[len(u)-1]
		switch {
		case strings.IndexByte(".,;:!?", last) >= 0:
			u = u[:len(u)-1]
		case last == ')' && strings.Count(u, "(") < strings.Count(u, ")"),
			last == ']' && strings.Count(u, "[") < strings.Count(u, "]"):
			u = u[:len(u)-1]
		default:
			return u
		}
	}
	return u
}
