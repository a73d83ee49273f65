package campaign

import (
	"net/url"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/tracking"
)

// TestUTMLinks: the campaign's utm_* parameters are added to the links to
// its landing domains (and their subdomains) in both parts, after the
// existing query and before the fragment, never twice, never to other
// hosts or to mailto:, placeholders in links kept working and non-ASCII
// values escaped.
func TestUTMLinks(t *testing.T) {
	u := UTM{Source: "newsletter", Medium: "email", Campaign: "été 2027", LandingDomains: []string{"shop.test"}}
	for _, tc := range []struct{ href, want string }{
		{"https://shop.test/", "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=%C3%A9t%C3%A9+2027"},
		{"https://www.shop.test/p?id=7#top", "https://www.shop.test/p?id=7&utm_source=newsletter&utm_medium=email&utm_campaign=%C3%A9t%C3%A9+2027#top"},
		{"https://shop.test/p?utm_source=app&x=1", "https://shop.test/p?utm_source=app&x=1&utm_medium=email&utm_campaign=%C3%A9t%C3%A9+2027"},
		{"https://shop.test/p?u=%first_name%", "https://shop.test/p?u=Ann&utm_source=newsletter&utm_medium=email&utm_campaign=%C3%A9t%C3%A9+2027"},
		{"HTTPS://SHOP.TEST:8443/a?x=", "HTTPS://SHOP.TEST:8443/a?x=&utm_source=newsletter&utm_medium=email&utm_campaign=%C3%A9t%C3%A9+2027"},
		{"https://shop.test.evil.test/", "https://shop.test.evil.test/"},
		{"https://blog.example.org/", "https://blog.example.org/"},
		{"https://notshop.test/", "https://notshop.test/"},
		{"mailto:help@shop.test", "mailto:help@shop.test"},
		{"https://shop.test/?utm_source=a&utm_medium=b&utm_campaign=c", "https://shop.test/?utm_source=a&utm_medium=b&utm_campaign=c"},
	} {
		t.Run(tc.href, func(t *testing.T) {
			c := u.apply(Content{Subject: "s", HTML: `<p><a class="x" href="` + tc.href + `">link</a></p>`, Text: "Go: " + tc.href + " now\n"}, "news.test")
			tpl, err := Compile(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := tpl.Render(Map{"first_name": "Ann"})
			wantHTML := `href="` + strings.ReplaceAll(tc.want, "&", "&amp;") + `"`
			if tc.want == tc.href {
				wantHTML = `href="` + tc.href + `"` // an unchanged tag is copied as written
			}
			if !strings.Contains(r.HTML, wantHTML) {
				t.Errorf("html %s, want %s", r.HTML, wantHTML)
			}
			if !strings.Contains(r.Text, "Go: "+tc.want+" now") {
				t.Errorf("text %q, want %s", r.Text, tc.want)
			}
			// Applying twice adds nothing.
			if again := u.apply(c, "news.test"); again != c {
				t.Errorf("second apply changed the content:\n%+v\n%+v", again, c)
			}
		})
	}
	// Without landing domains, the From domain is the landing domain;
	// without parameters nothing changes.
	c := Content{HTML: `<a href="https://news.test/x">x</a><a href="https://shop.test/y">y</a>`}
	if got := (UTM{Source: "nl"}).apply(c, "news.test").HTML; got != `<a href="https://news.test/x?utm_source=nl">x</a><a href="https://shop.test/y">y</a>` {
		t.Errorf("default landing domain: %s", got)
	}
	if got := (UTM{LandingDomains: []string{"news.test"}}).apply(c, "news.test"); got != c {
		t.Errorf("no parameters: %+v", got)
	}
	for _, bad := range []UTM{{Source: "a\nb"}, {Source: strings.Repeat("x", 201)}, {Source: "x", LandingDomains: []string{"https://shop.test"}}} {
		if bad.validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestUTMBeforeTracking: a campaign with UTM parameters and tracking
// sends click tokens whose target carries the parameters, in both parts.
func TestUTMBeforeTracking(t *testing.T) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	eachBackend(t, 2, func(t *testing.T, e *svcEnv) {
		e.opts.Tracking = &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" }}
		e.svc.SetOptions(e.opts)
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("utm")
		sp.UTM = UTM{Source: "newsletter", Medium: "email", Campaign: "spring", Content: "hero", LandingDomains: []string{"shop.test"}}
		sp.HTML = `<p>Hi %name%, <a href="https://shop.test/sale?c=%city%">sale</a> <a href="https://other.test/">other</a></p>`
		sp.Text = "Sale: https://shop.test/sale?c=%city%\nOther: https://other.test/\n"
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Send(e.ctx, "utm"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "sent", func() bool { return e.status("utm").Status == StatusSent })
		body := unQP(e.queued(t)["c0@example.test"][0])
		var targets []string
		for _, m := range clickToken.FindAllStringSubmatch(body, -1) {
			tok, err := signer.Decode(m[1])
			if err != nil {
				t.Fatal(err)
			}
			targets = append(targets, tok.URL)
		}
		want := "https://shop.test/sale?c=Taipei&utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_content=hero"
		if len(targets) != 4 || targets[0] != want || targets[1] != "https://other.test/" || targets[2] != want || targets[3] != "https://other.test/" {
			t.Fatalf("tracked targets %q", targets)
		}
		if _, err := url.Parse(targets[0]); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzUTMApply: any template content gets UTM parameters without a
// crash; a second apply changes nothing, and content that compiled still
// compiles.
func FuzzUTMApply(f *testing.F) {
	f.Add(`<a href="https://shop.test/p?u=%first_name%#x">x</a>`, "See https://www.shop.test/a?b=1.\n", "été")
	f.Add(`<area href=" HTTPS://shop.test:80"><a href=https://shop.test/?utm_source=>`, "https://shop.test/%x%", "a&b=c")
	f.Fuzz(func(t *testing.T, html, text, campaign string) {
		u := UTM{Source: "nl", Campaign: campaign, LandingDomains: []string{"shop.test"}}
		c := Content{Subject: "s", HTML: html, Text: text}
		_, before := Compile(c, nil)
		once := u.apply(c, "shop.test")
		if twice := u.apply(once, "shop.test"); twice != once {
			t.Fatalf("second apply changed %q to %q", once, twice)
		}
		if _, err := Compile(once, nil); before == nil && err != nil {
			t.Fatalf("UTM broke a template: %v\n%q", err, once)
		}
	})
}
