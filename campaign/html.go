package campaign

import (
	"fmt"
	"io"
	"strings"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// HTMLToText turns an HTML body into its plain-text alternative: the text
// of the document without head, script and style; block elements start
// new lines (paragraphs and headings a blank line), list items get "- ",
// links are followed by their target in parentheses (unless the text is
// the target), images give their alt text. Placeholders survive, so the
// generated text is compiled like a written one.
func HTMLToText(src string) string {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	skip := 0 // depth inside head/script/style/noscript/title
	var hrefs []string
	var linkText []int // b.Len() at each open <a>
	pendingSpace := false
	newline := func(n int) {
		s := b.String()
		have := len(s) - len(strings.TrimRight(s, "\n"))
		if b.Len() == 0 {
			return
		}
		for ; have < n; have++ {
			b.WriteByte('\n')
		}
		pendingSpace = false
	}
	write := func(s string) {
		if s == "" {
			return
		}
		if pendingSpace && b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteString(s)
	}
	for {
		tt := z.Next()
		switch tt {
		case xhtml.ErrorToken:
			if z.Err() != io.EOF {
				return strings.TrimSpace(b.String())
			}
			out := strings.TrimSpace(b.String())
			if out != "" {
				out += "\n"
			}
			return out
		case xhtml.TextToken:
			if skip > 0 {
				continue
			}
			text := string(z.Text())
			lead := len(text) > 0 && isSpace(text[0])
			trail := len(text) > 0 && isSpace(text[len(text)-1])
			words := strings.Fields(text)
			if len(words) == 0 {
				if lead || trail {
					pendingSpace = true
				}
				continue
			}
			if lead {
				pendingSpace = true
			}
			write(strings.Join(words, " "))
			pendingSpace = trail
		case xhtml.StartTagToken, xhtml.SelfClosingTagToken, xhtml.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			end := tt == xhtml.EndTagToken
			attrs := map[string]string{}
			for hasAttr && !end {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				attrs[string(k)] = string(v)
			}
			switch a {
			case atom.Head, atom.Script, atom.Style, atom.Noscript, atom.Title, atom.Template:
				if tt == xhtml.SelfClosingTagToken {
					continue
				}
				if end {
					skip = max(0, skip-1)
				} else {
					skip++
				}
				continue
			}
			if skip > 0 {
				continue
			}
			switch a {
			case atom.Br:
				b.WriteByte('\n')
				pendingSpace = false
			case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote, atom.Table, atom.Ul, atom.Ol:
				newline(2)
			case atom.Div, atom.Tr, atom.Section, atom.Article, atom.Header, atom.Footer, atom.Center, atom.Dl, atom.Dt, atom.Dd:
				newline(1)
			case atom.Td, atom.Th:
				if !end {
					pendingSpace = true
				}
			case atom.Li:
				if !end {
					newline(1)
					write("- ")
				}
			case atom.Hr:
				newline(1)
				write("----")
				newline(1)
			case atom.Img:
				if alt := strings.TrimSpace(attrs["alt"]); alt != "" {
					write(alt)
				}
			case atom.A:
				if !end {
					hrefs = append(hrefs, strings.TrimSpace(attrs["href"]))
					linkText = append(linkText, b.Len())
					continue
				}
				if len(hrefs) == 0 {
					continue
				}
				href, at := hrefs[len(hrefs)-1], linkText[len(linkText)-1]
				hrefs, linkText = hrefs[:len(hrefs)-1], linkText[:len(linkText)-1]
				text := strings.TrimSpace(b.String()[min(at, b.Len()):])
				if href != "" && !strings.HasPrefix(href, "#") && text != href && "mailto:"+text != href {
					pendingSpace = true
					write("(" + href + ")")
				}
			}
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// CheckHTML lists problems in an HTML body that do not stop it from being
// saved but that mail clients or filters punish: scripts, embedded
// objects, forms, event-handler attributes and javascript: links.
func CheckHTML(src string) []string {
	var warns []string
	seen := map[string]bool{}
	warn := func(s string) {
		if !seen[s] {
			seen[s] = true
			warns = append(warns, s)
		}
	}
	eachTag(src, func(name string, attrs [][2]string) {
		switch atom.Lookup([]byte(name)) {
		case atom.Script:
			warn("<script> is removed or blocked by every mail client")
		case atom.Iframe, atom.Object, atom.Embed:
			warn(fmt.Sprintf("<%s> is blocked by mail clients", name))
		case atom.Form:
			warn("<form> does not work in most mail clients and raises spam scores")
		}
		for _, kv := range attrs {
			key := kv[0]
			if strings.HasPrefix(key, "on") {
				warn(fmt.Sprintf("event handler attribute %s= is stripped by mail clients", key))
			}
			if (key == "href" || key == "src") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(kv[1])), "javascript:") {
				warn("javascript: link")
			}
		}
	})
	return warns
}

// eachTag calls f with every start (or self-closing) tag of src, its
// lower-case name and attributes.
func eachTag(src string, f func(name string, attrs [][2]string)) {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	var attrs [][2]string
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			return
		}
		if tt != xhtml.StartTagToken && tt != xhtml.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		attrs = attrs[:0]
		for hasAttr {
			var k, v []byte
			k, v, hasAttr = z.TagAttr()
			attrs = append(attrs, [2]string{string(k), string(v)})
		}
		f(string(name), attrs)
	}
}

// The hidden preheader block: preview text that mail clients show after
// the subject, invisible in the opened message.
const (
	preheaderOpen  = `<div style="display:none;font-size:1px;color:transparent;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all">`
	preheaderClose = "</div>"
)

// bodyContentOffset returns the byte offset just after the <body> start
// tag of src, or 0 when there is none.
func bodyContentOffset(src string) int {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	off := 0
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			return 0
		}
		off += len(z.Raw())
		if tt == xhtml.StartTagToken {
			if name, _ := z.TagName(); atom.Lookup(name) == atom.Body {
				return off
			}
		}
	}
}

// bodyEndOffset returns the byte offset of the </body> end tag of src, or
// len(src) when there is none (content is then appended).
func bodyEndOffset(src string) int {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	off := 0
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			return len(src)
		}
		if tt == xhtml.EndTagToken {
			if name, _ := z.TagName(); atom.Lookup(name) == atom.Body {
				return off
			}
		}
		off += len(z.Raw())
	}
}
