package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
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

// BenchmarkEngineSend20KB is a campaign send of a ~20 KB personalised
// HTML template through ingest's SubmitBatch into a real Pebble queue
// (fsync per page of 500) with SQLite progress; it reports messages/s:
//
//	go test -run '^$' -bench EngineSend -benchtime 20000x ./campaign
func BenchmarkEngineSend20KB(b *testing.B) {
	dir := b.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	db := openSQLite(b, filepath.Join(dir, "esp.db"))
	defer db.Close()
	prog, err := NewSQLProgress(context.Background(), db, false)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("<html><body><h1>Hello %first_name|there%</h1>")
	for sb.Len() < 20<<10 {
		fmt.Fprintf(&sb, `<p>Offer: <a href="https://shop.test/p/%d">product %d</a> at a price you will like.</p>`, sb.Len(), sb.Len())
	}
	sb.WriteString("</body></html>")
	tpl, err := Compile(Content{Subject: "%first_name%, this week", HTML: sb.String()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	e := &Engine{Submitter: ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)}), Progress: prog}
	b.ResetTimer()
	start := time.Now()
	st, err := e.Run(context.Background(), Send{ID: "bench", Template: tpl, From: &gomail.Address{Address: "news@shop.test"}, PageSize: 500}, genSource{n: int64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Sent)/time.Since(start).Seconds(), "msgs/s")
}
