package audience

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// TestTransactionsReadThroughThemselves: on SQLite a write transaction
// that waits for a second pool connection can wait for ever, because the
// pool's other connections may all be writers waiting for its lock (they
// get SQLITE_BUSY after busy_timeout; a dashboard test saw a campaign
// create fail so). With the pool cut to one connection, the store's
// writes must still work: upserts whose statement text is new (the
// statement cache prepared it on the pool inside the transaction), an
// import, tags, a double opt-in confirmation (it read the audience's
// settings on the pool), a segment count.
func TestTransactionsReadThroughThemselves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "esp.db"), Options{ImportDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)})
	c, err := s.NewConfirmer(ctx, ConfirmerOptions{Submitter: sub, BaseURL: "https://mail.shop.test/", DefaultFrom: "confirm@petrel.test", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.CreateAudience(ctx, Audience{Name: "news", DoubleOptIn: true, Fields: []Field{{Name: "city", Type: Text}}})
	if err != nil {
		t.Fatal(err)
	}
	s.DB().SetMaxOpenConns(1)
	for i, in := range []ContactInput{
		{Email: "ann@example.test", Name: ptr("Ann"), Fields: map[string]any{"city": "Taipei"}, Tags: []string{"vip"}},
		{Email: "bob@example.test", Tags: []string{"vip", "new"}},
		{Email: "ann@example.test", Fields: map[string]any{"city": "Oslo"}},
	} {
		if _, _, err := s.UpsertContact(ctx, a.ID, in); err != nil {
			t.Fatalf("upsert %d on a one-connection pool: %v", i, err)
		}
	}
	im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, strings.NewReader("email,city\ncid@example.test,Taipei\ndee@example.test,Paris\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RunImport(ctx, im.ID); err != nil {
		t.Fatalf("import on a one-connection pool: %v", err)
	}
	if n, err := c.SendPending(ctx); err != nil || n != 4 {
		t.Fatalf("SendPending = %d, %v; want 4", n, err)
	}
	links := queuedConfirmations(t, q)
	if len(links["ann@example.test"]) != 1 {
		t.Fatalf("confirmations %v", links)
	}
	if cf, err := c.Confirm(ctx, links["ann@example.test"][0], "192.0.2.1", "test"); err != nil || cf.Status != Active {
		t.Fatalf("confirm on a one-connection pool: %+v %v", cf, err)
	}
	if n, err := s.Count(ctx, a.ID, `status == "active" || city == "Taipei"`); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2 (ann confirmed, cid in Taipei)", n, err)
	}
}
