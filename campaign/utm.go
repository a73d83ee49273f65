package campaign

// UTM parameters, added on the server side: every link of a campaign
// whose host is one of its landing domains (or a subdomain of one) gets
// the campaign's utm_* parameters that it does not already have, in the
// HTML part (x/net/html tokens; the rest of the markup is copied byte for
// byte) and the text part, before click tracking wraps the link (the
// tracked target carries them). Existing query parameters and the
// fragment are kept; a parameter the link already has is never added
// twice. The rewrite is done once, on the template, so placeholders
// inside links keep working.

import (
	"errors"
	"net/url"
	"strings"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/petrel-mta/petrel/tracking"
)

// UTM are the analytics parameters of a campaign's links.
type UTM struct {
	Campaign string `json:"utm_campaign,omitempty"`
	Source   string `json:"utm_source,omitempty"`
	Medium   string `json:"utm_medium,omitempty"`
	Content  string `json:"utm_content,omitempty"`
	Term     string `json:"utm_term,omitempty"`
	// LandingDomains are the hosts whose links get the parameters (and
	// their subdomains); empty means the From address's domain.
	LandingDomains []string `json:"landing_domains,omitempty"`
}

// params are the utm_* pairs that are set, in a fixed order.
func (u UTM) params() [][2]string {
	var out [][2]string
	for _, kv := range [][2]string{{"utm_source", u.Source}, {"utm_medium", u.Medium}, {"utm_campaign", u.Campaign}, {"utm_content", u.Content}, {"utm_term", u.Term}} {
		if kv[1] != "" {
			out = append(out, kv)
		}
	}
	return out
}

// validate refuses UTM values that are not printable text and landing
// domains that are not host names.
func (u UTM) validate() error {
	for _, kv := range u.params() {
		if len(kv[1]) > 200 || strings.ContainsFunc(kv[1], func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return errors.New("campaign: " + kv[0] + " must be up to 200 bytes of printable text")
		}
	}
	for _, d := range u.LandingDomains {
		if d == "" || len(d) > 253 || strings.ContainsAny(d, "/:?#%@ \t") || strings.HasPrefix(d, ".") {
			return errors.New("campaign: landing domain " + `"` + d + `"` + " is not a host name")
		}
	}
	return nil
}

// apply adds u's parameters to the links of c (mail from fromDomain).
func (u UTM) apply(c Content, fromDomain string) Content {
	ps := u.params()
	if len(ps) == 0 {
		return c
	}
	domains := u.LandingDomains
	if len(domains) == 0 {
		domains = []string{fromDomain}
	}
	add := func(href string) string { return addUTM(href, ps, domains) }
	if c.HTML != "" {
		c.HTML = utmHTML(c.HTML, add)
	}
	if c.Text != "" {
		c.Text = tracking.RewriteText(c.Text, func(_ int, href string) (string, bool) {
			out := add(href)
			return out, out != href
		})
	}
	return c
}

// utmHTML rewrites the href of every <a> and <area> of src through add;
// every other byte is copied as it was.
func utmHTML(src string, add func(string) string) string {
	z := xhtml.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	b.Grow(len(src) + len(src)/16)
	for {
		tt := z.Next()
		raw := z.Raw()
		if tt == xhtml.ErrorToken {
			b.Write(raw)
			return b.String()
		}
		if tt == xhtml.StartTagToken || tt == xhtml.SelfClosingTagToken {
			name, hasAttr := z.TagName()
			if a := atom.Lookup(name); (a == atom.A || a == atom.Area) && hasAttr {
				tok := xhtml.Token{Type: tt, DataAtom: a, Data: a.String()}
				changed, seen := false, false
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					at := xhtml.Attribute{Key: string(k), Val: string(v)}
					if at.Key == "href" && !seen {
						seen = true
						if out := add(strings.TrimSpace(at.Val)); out != strings.TrimSpace(at.Val) {
							at.Val, changed = out, true
						}
					}
					tok.Attr = append(tok.Attr, at)
				}
				if changed {
					b.WriteString(tok.String())
					continue
				}
			}
		}
		b.Write(raw)
	}
}

// addUTM appends the pairs ps that href's query does not have yet, when
// href is an http(s) link to one of domains. href may hold placeholders
// (%field%) anywhere but in its host.
func addUTM(href string, ps [][2]string, domains []string) string {
	if !hasHTTPScheme(href) {
		return href
	}
	rest := href[strings.Index(href, "://")+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := strings.ToLower(rest[:end])
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if host == "" || strings.Contains(host, "%") || !inDomains(host, domains) {
		return href
	}
	base, frag := href, ""
	if i := strings.IndexByte(href, '#'); i >= 0 {
		base, frag = href[:i], href[i:]
	}
	query := ""
	if i := strings.IndexByte(base, '?'); i >= 0 {
		query = base[i+1:]
	}
	have := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		have[strings.ToLower(k)] = true
	}
	var b strings.Builder
	b.WriteString(base)
	sep := "&"
	switch {
	case !strings.Contains(base, "?"):
		sep = "?"
	case strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&"):
		sep = ""
	}
	added := false
	for _, kv := range ps {
		if have[kv[0]] {
			continue
		}
		b.WriteString(sep)
		// A '%' of the escaped value is written %% (a literal '%' in
		// the template: %C3 would read as a placeholder).
		b.WriteString(kv[0] + "=" + strings.ReplaceAll(url.QueryEscape(kv[1]), "%", "%%"))
		sep, added = "&", true
	}
	if !added {
		return href
	}
	b.WriteString(frag)
	return b.String()
}

// inDomains reports whether host is one of domains or a subdomain of one.
func inDomains(host string, domains []string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, d := range domains {
		d = strings.TrimSuffix(strings.ToLower(d), ".")
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}
