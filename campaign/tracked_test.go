package campaign

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// TestPrecompiledTrackingMatchesRewrite: a send's template with tracking
// compiled in renders, for every recipient, exactly the message the
// per-message rewrite (Tracking.apply) makes: same HTML and text bytes,
// same click and open tokens (placeholders inside targets, the
// unsubscribe link, an opted-out link, a link too long for a token, a
// text value that is itself a URL, a value with markup); templates whose
// links depend on values are not precompiled.
func TestPrecompiledTrackingMatchesRewrite(t *testing.T) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	huge := "https://shop.test/" + strings.Repeat("x", 5000)
	html := `<html><head><title>x</title></head><body><h1>Hi %first_name|there%</h1>` +
		`<p><a href="https://shop.test/p/1?u=%first_name%&amp;c=%city|none%" title="%name%">one</a> ` +
		`<a href="https://blog.example.org/">two</a> <a href="mailto:help@shop.test">mail</a> ` +
		`<a href="https://shop.test/private" data-petrel-notrack>private</a> <a href="` + huge + `">huge</a> ` +
		`<a href="%unsubscribe_url%">Unsubscribe</a> <a href="%unsubscribe_url%" data-petrel-notrack>Leave</a> Unsubscribe at %unsubscribe_url%. ` +
		`<area href="HTTPS://shop.test/map"> <a href="#top">top</a></p>` +
		`<p><a href="%unsubscribe_url%">Unsubscribe</a></p></body></html>`
	text := "Hi %first_name%,\nSee https://shop.test/p/1?u=%first_name%. Leave: %unsubscribe_url%. Or (https://blog.example.org/a).\nYour page: %page|none%\nUnsubscribe: %unsubscribe_url%\n"
	unsub := func(_, rcpt string) string { return "https://mail.shop.test/unsubscribe/" + rcpt }
	now := time.Unix(1_800_000_000, 0)
	recipients := []Recipient{
		{ID: 1, Email: "ann@gmail.com", Values: Map{"first_name": "Ann", "name": "Ann O'Neil", "city": "Taipei"}},
		{ID: 2, Email: "bo@example.test", Values: Map{"first_name": "<b>&amp;", "name": `"quoted"`}},
		{ID: 3, Email: "cy@example.test", Values: Map{"first_name": "Cy", "page": "https://cy.example.test/me"}},
		{ID: 4, Email: "di@example.test", Values: Map{"first_name": "Di Ana"}},
		{ID: 5, Email: "ed@example.test"},
	}
	for _, tc := range []struct {
		name          string
		html, text    string
		opens, clicks bool
		precompiled   bool
	}{
		{"both", html, text, true, true, true},
		{"html only", html, "", true, true, true},
		{"opens only", html, text, true, false, true},
		{"clicks only", html, text, false, true, true},
		{"text only", "", text, true, true, true},
		{"href is a placeholder", `<p><a href="%page%">me</a></p>`, "", true, true, false},
		{"placeholder cut by a text link's end", "", "Go: https://shop.test/%first_name|dear friend%\n", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Compile(Content{Subject: "Hi %first_name%", HTML: tc.html, Text: tc.text}, nil)
			if err != nil {
				t.Fatal(err)
			}
			tr := &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test/" }, Opens: tc.opens, Clicks: tc.clicks}
			s := Send{ID: "spring", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, Stream: "marketing", Unsubscribe: unsub, Tracking: tr}
			tt := tr.precompile(tpl, "news@shop.test", true)
			if (tt != nil) != tc.precompiled {
				t.Fatalf("precompiled = %v, want %v", tt != nil, tc.precompiled)
			}
			for _, r := range recipients {
				want, err := s.build(r, "marketing", now, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.build(r, "marketing", now, tt)
				if err != nil {
					t.Fatal(err)
				}
				// The MIME boundary is random: compare the parts.
				if g, w := stripBoundary(string(got)), stripBoundary(string(want)); g != w {
					t.Fatalf("recipient %d: precompiled message differs from the rewritten one:\n--- got\n%s\n--- want\n%s", r.ID, g, w)
				}
				if tc.clicks && tc.precompiled && !strings.Contains(string(got), "/t/c/") {
					t.Fatalf("recipient %d: no tracked link:\n%s", r.ID, got)
				}
			}
		})
	}
}

// stripBoundary replaces a multipart message's boundary by a fixed one.
func stripBoundary(msg string) string {
	i := strings.Index(msg, "boundary=")
	if i < 0 {
		return msg
	}
	rest := msg[i+len("boundary="):]
	end := strings.IndexAny(rest, "\r\n;")
	b := strings.Trim(rest[:end], `"`)
	return strings.ReplaceAll(msg, b, "BOUNDARY")
}

// FuzzPrecompiledTracking: for any template and values, the message
// built from the precompiled tracked template is the one the
// per-message rewrite builds (or the template is not precompiled).
func FuzzPrecompiledTracking(f *testing.F) {
	f.Add(`<p><a href="https://shop.test/?u=%name%">x</a><a href="%unsubscribe_url%">u</a></p>`, "Go https://shop.test/%name% or %unsubscribe_url%.\n", "Ann Lee")
	f.Add(`<a href=" http://a.test/%name%" data-petrel-notrack>x</a><area href="https://b.test">`, "", "http://evil.test/ x")
	// A literal link that is this recipient's unsubscribe link: left as it
	// is by the per-message rewrite, so not rewritten here either.
	f.Add(`<A HREF='https://mail.shop.test/u/a@example.test'>u</A><a href="https://b.test">b</a>`, "", "x")
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, html, text, name string) {
		tpl, err := Compile(Content{Subject: "s", HTML: html, Text: text}, nil)
		if err != nil {
			return
		}
		tr := &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" }, Opens: true, Clicks: true}
		s := Send{ID: "f", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, Stream: "marketing", Tracking: tr,
			Unsubscribe: func(_, rcpt string) string { return "https://mail.shop.test/u/" + rcpt }}
		tt := tr.precompile(tpl, "news@shop.test", true)
		if tt == nil {
			return
		}
		r := Recipient{ID: 3, Email: "a@example.test", Values: Map{"name": name}}
		want, err1 := s.build(r, "marketing", now, nil)
		got, err2 := s.build(r, "marketing", now, tt)
		if err1 != nil || err2 != nil {
			return
		}
		if g, w := stripBoundary(string(got)), stripBoundary(string(want)); g != w {
			t.Fatalf("precompiled differs:\n--- got\n%s\n--- want\n%s", g, w)
		}
	})
}

// TestReplacePlaceholder: only real %unsubscribe_url% placeholders are
// replaced, read as the template compiler reads them.
func TestReplacePlaceholder(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"%unsubscribe_url%", "U"},
		{"a %unsubscribe_url% b %unsubscribe_url%", "a U b U"},
		{"http:/%%unsubscribe_url%", "http:/%%unsubscribe_url%%"}, // the same text: a literal '%' is written "%%"
		{"%%%unsubscribe_url%", "%%U"},
		{"50% %unsubscribe_url%", "50%% U"},
		{"%name%unsubscribe_url%", "%name%unsubscribe_url%%"},
		{"%name|x%unsubscribe_url% %unsubscribe_url%", "%name|x%unsubscribe_url%% U"},
		{"%unsubscribe_url|here%", "U"},
		{"no placeholder", "no placeholder"},
	} {
		if got := replacePlaceholder(tc.src, "unsubscribe_url", "U"); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.src, got, tc.want)
		}
	}
}
