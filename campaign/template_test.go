package campaign

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

var testFields = NewFieldSet("first_name", "city", "unsubscribe_url", "event.cart_url")

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		c       Content
		part    string
		pos     string
		msgPart string
	}{
		{"unknown field", Content{Subject: "Hi", Text: "Hello %last_name%"}, "text", "1:7", "unknown field %last_name%"},
		{"unclosed", Content{Subject: "Hi", Text: "line one\n  dear %first_name, hi"}, "text", "2:8", "unbalanced %"},
		{"unclosed fallback", Content{Subject: "Hi", Text: "x %first_name|there\n%"}, "text", "1:3", "not closed on its line"},
		{"subject unknown", Content{Subject: "Hi %nick%", Text: "x"}, "subject", "1:4", "unknown field %nick%"},
		{"html position in runes", Content{Subject: "s", HTML: "<p>你好 %bogus%</p>"}, "html", "1:7", "unknown field"},
		{"trailing dot", Content{Subject: "s", Text: "%event.%"}, "text", "1:1", "invalid field name"},
		{"invalid utf8", Content{Subject: "s", Text: "ok\n\xff"}, "text", "2:1", "invalid UTF-8"},
		{"line break in subject", Content{Subject: "a\r\nBcc: x@y", Text: "x"}, "subject", "1:2", "line break"},
		{"generated text inherits html errors", Content{Subject: "s", HTML: "<p>%first_name</p>"}, "html", "1:4", "unbalanced"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.c, testFields)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile error = %v, want a *SyntaxError", err)
			}
			if se.Part != tc.part || se.Pos.String() != tc.pos || !strings.Contains(se.Msg, tc.msgPart) {
				t.Fatalf("error = %q (part %s at %s), want part %s at %s containing %q", se.Error(), se.Part, se.Pos, tc.part, tc.pos, tc.msgPart)
			}
		})
	}
	if _, err := Compile(Content{Subject: "s"}, nil); !errors.Is(err, ErrEmptyTemplate) {
		t.Fatalf("empty template: %v", err)
	}
	big := Content{Subject: "s", Text: strings.Repeat("a", MaxTemplateSize+1)}
	if _, err := Compile(big, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized template: %v", err)
	}
}

func TestRender(t *testing.T) {
	c := Content{
		Subject:   "%first_name|Friend%, 50% off in %city%",
		Preheader: "Only today, %first_name|there%",
		HTML:      `<html><body><p>Hi %first_name|there%! 100%% sure.</p><a href="%unsubscribe_url%">unsubscribe</a></body></html>`,
		Text:      "Hi %first_name|there%, cart: %event.cart_url%\nUnsubscribe: %unsubscribe_url%\n",
	}
	tpl, err := Compile(c, testFields)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tpl.Fields, ","); got != "first_name,city,unsubscribe_url,event.cart_url" {
		t.Errorf("Fields = %s", got)
	}
	tests := []struct {
		name string
		vals Map
		want Rendered
	}{
		{"values escaped per part", Map{"first_name": `<b>Ann & "Bo"</b>`, "city": "Taipei\r\nBcc: evil@x.test", "unsubscribe_url": "https://u.test/?a=1&b=2", "event.cart_url": "https://shop.test/c/1"},
			Rendered{
				Subject:   `<b>Ann & "Bo"</b>, 50% off in TaipeiBcc: evil@x.test`,
				Preheader: `Only today, <b>Ann & "Bo"</b>`,
				HTML:      `<html><body>` + preheaderOpen + `Only today, &lt;b&gt;Ann &amp; &#34;Bo&#34;&lt;/b&gt;` + preheaderClose + `<p>Hi &lt;b&gt;Ann &amp; &#34;Bo&#34;&lt;/b&gt;! 100% sure.</p><a href="https://u.test/?a=1&amp;b=2">unsubscribe</a></body></html>`,
				Text:      "Hi <b>Ann & \"Bo\"</b>, cart: https://shop.test/c/1\nUnsubscribe: https://u.test/?a=1&b=2\n",
			}},
		{"fallbacks for missing and empty", Map{"first_name": "", "unsubscribe_url": "u"},
			Rendered{
				Subject:   "Friend, 50% off in ",
				Preheader: "Only today, there",
				HTML:      `<html><body>` + preheaderOpen + `Only today, there` + preheaderClose + `<p>Hi there! 100% sure.</p><a href="u">unsubscribe</a></body></html>`,
				Text:      "Hi there, cart: \nUnsubscribe: u\n",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tpl.Render(tc.vals); got != tc.want {
				t.Fatalf("Render:\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ name, html, want string }{
		{"paragraphs and links", `<html><head><title>T</title><style>p{}</style></head><body><h1>Sale</h1><p>Hello   <b>%first_name%</b>,
			see <a href="https://shop.test/x">our shop</a>.</p><p>Bye<br>Team</p></body></html>`,
			"Sale\n\nHello %first_name%, see our shop (https://shop.test/x).\n\nBye\nTeam\n"},
		{"lists images entities", `<ul><li>One &amp; two</li><li><img src="a.png" alt="Logo"></li></ul><script>alert(1)</script>`,
			"- One & two\n- Logo\n"},
		{"link text equal to target", `<a href="https://x.test">https://x.test</a> <a href="#top">top</a>`, "https://x.test top\n"},
		{"empty", ``, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HTMLToText(tc.html); got != tc.want {
				t.Fatalf("HTMLToText:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCheckHTMLWarnings(t *testing.T) {
	w := CheckHTML(`<p onclick="x()">a</p><script>1</script><a href=" JavaScript:alert(1)">x</a><iframe src="y"></iframe>`)
	want := []string{"event handler attribute onclick=", "<script>", "javascript: link", "<iframe>"}
	if len(w) != len(want) {
		t.Fatalf("warnings %q", w)
	}
	for i := range want {
		if !strings.Contains(w[i], want[i]) {
			t.Errorf("warning %d = %q, want it to mention %q", i, w[i], want[i])
		}
	}
	if w := CheckHTML(`<p><a href="https://x.test">ok</a></p>`); len(w) != 0 {
		t.Fatalf("clean HTML warned: %q", w)
	}
}

// TestBuildMessage parses the built message back with the standard
// library only (net/mail, mime, mime/multipart): an independent reader.
func TestBuildMessage(t *testing.T) {
	tpl, err := Compile(Content{Subject: "Grüße, %first_name%", Preheader: "Peek", HTML: `<html><body><p>Héllo %first_name%</p></body></html>`}, testFields)
	if err != nil {
		t.Fatal(err)
	}
	r := tpl.Render(Map{"first_name": "Zoë"})
	env := Envelope{
		From:          &gomail.Address{Name: "Shop", Address: "news@shop.test"},
		To:            []*gomail.Address{{Address: "zoe@example.test"}},
		ReplyTo:       []*gomail.Address{{Address: "help@shop.test"}},
		MessageIDHost: "shop.test",
		Date:          time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		Extra:         [][2]string{{"X-Petrel-Campaign", "c1"}},
	}
	raw, err := BuildMessage(env, r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("bare LF in built message")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != "Grüße, Zoë" {
		t.Errorf("subject %q (%v)", subj, err)
	}
	if msg.Header.Get("X-Petrel-Campaign") != "c1" || !strings.HasSuffix(msg.Header.Get("Message-Id"), "@shop.test>") {
		t.Errorf("header: %v", msg.Header)
	}
	if from, _ := msg.Header.AddressList("From"); len(from) != 1 || from[0].Address != "news@shop.test" || from[0].Name != "Shop" {
		t.Errorf("from %v", from)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q %v", mt, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types, bodies []string
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(b))
	}
	if len(types) != 2 || !strings.HasPrefix(types[0], "text/plain") || !strings.HasPrefix(types[1], "text/html") {
		t.Fatalf("parts %q", types)
	}
	if bodies[0] != "Héllo Zoë\n" && bodies[0] != "Héllo Zoë\r\n" {
		t.Errorf("text part %q", bodies[0])
	}
	if !strings.Contains(bodies[1], `<body><div style="display:none`) || !strings.Contains(bodies[1], "Peek</div><p>Héllo Zoë</p>") {
		t.Errorf("html part %q", bodies[1])
	}
}

func TestBuildMessageTextOnly(t *testing.T) {
	raw, err := BuildMessage(Envelope{From: &gomail.Address{Address: "a@b.test"}, To: []*gomail.Address{{Address: "c@d.test"}}}, Rendered{Subject: "s", Text: "plain\n"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if mt, _, _ := mime.ParseMediaType(msg.Header.Get("Content-Type")); mt != "text/plain" {
		t.Fatalf("content type %q", msg.Header.Get("Content-Type"))
	}
	if _, err := BuildMessage(Envelope{}, Rendered{Text: "x"}); err == nil {
		t.Fatal("no From/To accepted")
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"Hi %first_name|there%", "50% off %%", "%a.b.c%", "%x|", "%\n%", "<p>%city%</p>", "\xff%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := Compile(Content{Subject: "s", Text: src, HTML: src}, nil)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) && !errors.Is(err, ErrEmptyTemplate) {
				t.Fatalf("error of unexpected type: %v", err)
			}
			return
		}
		// With no placeholders filled, a template without '%' renders to itself.
		if !strings.Contains(src, "%") {
			if got := tpl.Render(nil).Text; strings.TrimSpace(src) != "" && got != src {
				t.Fatalf("literal text changed: %q -> %q", src, got)
			}
		}
		_ = HTMLToText(src)
	})
}

func TestPreheaderPlacement(t *testing.T) {
	tests := []struct{ name, html, want string }{
		{"after body tag with attributes", `<html><head></head><body class="%city%"><p>x</p></body></html>`,
			`<html><head></head><body class="Taipei">` + preheaderOpen + "Hi Taipei" + preheaderClose + `<p>x</p></body></html>`},
		{"no body tag: first", `<p>x</p>`, preheaderOpen + "Hi Taipei" + preheaderClose + `<p>x</p>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Compile(Content{Subject: "s", Preheader: "Hi %city%", HTML: tc.html}, testFields)
			if err != nil {
				t.Fatal(err)
			}
			if got := tpl.Render(Map{"city": "Taipei"}).HTML; got != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestComplianceFooter(t *testing.T) {
	tests := []struct {
		name               string
		in                 Content
		wantHTML, wantText string
	}{
		{"html and generated text", Content{Subject: "s", HTML: "<html><body><p>Hi</p></body></html>"},
			`<html><body><p>Hi</p><p style="font-size:12px;color:#666666">Shop &amp; Co, 100%% Road<br><a href="%unsubscribe_url%">Unsubscribe</a></p></body></html>`,
			"Hi\n\n--\nShop & Co, 100%% Road\nUnsubscribe: %unsubscribe_url%\n"},
		{"text only", Content{Subject: "s", Text: "Hello\n\n"}, "", "Hello\n\n--\nShop & Co, 100%% Road\nUnsubscribe: %unsubscribe_url%\n"},
		{"own link: untouched", Content{Subject: "s", Text: "Bye: %unsubscribe_url%"}, "", "Bye: %unsubscribe_url%"},
	}
	for _, tc := range tests {
		got := withFooter(tc.in, "Shop & Co, 100% Road")
		if got.HTML != tc.wantHTML || got.Text != tc.wantText {
			t.Errorf("%s:\n got %q / %q\nwant %q / %q", tc.name, got.HTML, got.Text, tc.wantHTML, tc.wantText)
		}
		tpl, err := Compile(got, NewFieldSet("unsubscribe_url"))
		if err != nil {
			t.Fatalf("%s: footer does not compile: %v", tc.name, err)
		}
		if r := tpl.Render(Map{"unsubscribe_url": "https://u.test/x"}); !strings.Contains(r.Text, "https://u.test/x") || strings.Contains(r.Text, "%%") {
			t.Errorf("%s: rendered text %q", tc.name, r.Text)
		}
	}
}
