package campaign

import (
	"fmt"
	"strings"
	"testing"

	gomail "github.com/emersion/go-message/mail"
)

// BenchmarkRenderAndBuild20KB renders a ~20 KB personalised HTML
// template (text part generated) and builds its MIME message, the
// per-recipient work of a campaign send before ingest:
//
//	go test -run '^$' -bench RenderAndBuild -benchmem ./campaign
func BenchmarkRenderAndBuild20KB(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("<html><body><h1>Hello %first_name|there%</h1>")
	for sb.Len() < 20<<10 {
		fmt.Fprintf(&sb, `<p>Offer for %%city|you%%: <a href="https://shop.test/p/%d?u=%%first_name%%">product %d</a> at a price you will like.</p>`, sb.Len(), sb.Len())
	}
	sb.WriteString(`<p><a href="%unsubscribe_url%">Unsubscribe</a></p></body></html>`)
	tpl, err := Compile(Content{Subject: "%first_name%, this week", Preheader: "New in %city%", HTML: sb.String()}, testFields)
	if err != nil {
		b.Fatal(err)
	}
	env := Envelope{From: &gomail.Address{Name: "Shop", Address: "news@shop.test"}, To: []*gomail.Address{{Address: "x@example.test"}}}
	b.ReportAllocs()
	b.SetBytes(int64(sb.Len()))
	for i := 0; b.Loop(); i++ {
		r := tpl.Render(Map{"first_name": "Ann", "city": "Taipei", "unsubscribe_url": "https://u.shop.test/u/abc"})
		if _, err := BuildMessage(env, r); err != nil {
			b.Fatal(err)
		}
	}
}
