package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// svcEnv is a campaign service over a real ESP store (SQLite or
// PostgreSQL), a real ingest and a real queue.
type svcEnv struct {
	ctx  context.Context
	aud  *audience.Store
	q    *queue.Queue
	sub  *ingest.Submitter
	svc  *Service
	tpls *Templates
	aid  int64
	dsn  string
	// svcCtx is a lifetime for Start that restart can end; stopSvc
	// ends it.
	svcCtx  context.Context
	stopSvc context.CancelFunc
	opts    Options
}

// restart stops the service (its sends end between pages) and starts a
// new one on the same database and queue, as a restarted petreld would.
func (e *svcEnv) restart(t *testing.T) {
	t.Helper()
	e.stopSvc()
	e.svc.Wait()
	ctx, cancel := context.WithCancel(e.ctx)
	svc, err := NewService(ctx, e.aud, e.sub, e.svc.unsub, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetOptions(e.opts)
	e.svc, e.svcCtx, e.stopSvc = svc, ctx, cancel
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// eachBackend runs f once on SQLite and once on PostgreSQL, each with an
// audience "news" (field city) of n consented contacts c<i>@example.test.
func eachBackend(t *testing.T, n int, f func(t *testing.T, e *svcEnv)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			dsn := filepath.Join(dir, "esp.db")
			if backend == "postgres" {
				dsn = testnet.PostgresDB(t)
			}
			e := newSvcEnv(t, dir, dsn)
			a, err := e.aud.CreateAudience(e.ctx, audience.Audience{Name: "news", Fields: []audience.Field{{Name: "city", Type: audience.Text}}})
			if err != nil {
				t.Fatal(err)
			}
			e.aid = a.ID
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("Contact %d", i)
				c, _, err := e.aud.UpsertContact(e.ctx, a.ID, audience.ContactInput{Email: fmt.Sprintf("c%d@example.test", i), Name: &name,
					Fields: map[string]any{"city": []string{"Taipei", "Oslo"}[i%2]}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.aud.RecordConsent(e.ctx, a.ID, c.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "form"}); err != nil {
					t.Fatal(err)
				}
			}
			f(t, e)
		})
	}
}

func newSvcEnv(t *testing.T, dir, dsn string) *svcEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &svcEnv{ctx: ctx, dsn: dsn}
	var err error
	if e.aud, err = audience.Open(ctx, dsn, audience.Options{}); err != nil {
		t.Fatal(err)
	}
	if e.q, err = queue.Open(filepath.Join(dir, "queue"), queue.Options{}); err != nil {
		t.Fatal(err)
	}
	e.sub = ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: e.q, Logger: slog.New(slog.DiscardHandler)})
	unsub := func(stream, rcpt string) string { return "https://mail.shop.test/unsubscribe/" + rcpt }
	if e.svc, err = NewService(ctx, e.aud, e.sub, unsub, nil); err != nil {
		t.Fatal(err)
	}
	if e.tpls, err = NewTemplates(ctx, e.aud.DB(), e.aud.Postgres()); err != nil {
		t.Fatal(err)
	}
	e.opts = Options{Templates: e.tpls}
	e.svc.SetOptions(e.opts)
	e.svcCtx, e.stopSvc = context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel()
		e.svc.Wait()
		e.q.Close()
		e.aud.Close()
	})
	return e
}

func (e *svcEnv) spec(id string) Spec {
	return Spec{ID: id, Audience: e.aid, From: "news@shop.test", Subject: "Hello %first_name%", Text: "Dear %name%, news from %city%.\n",
		PostalAddress: "Shop Ltd, 1 Harbour Road, Taipei", PageSize: 10}
}

// TestListCampaigns: newest first, filtered by status, paged by cursor,
// with progress and times; a bad cursor or status is a 400-class error.
func TestListCampaigns(t *testing.T) {
	eachBackend(t, 4, func(t *testing.T, e *svcEnv) {
		for i := 0; i < 5; i++ {
			if _, err := e.svc.Create(e.ctx, e.spec(fmt.Sprintf("c%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Send(e.ctx, "c2"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "c2 sent", func() bool { c, _ := e.svc.Get(e.ctx, "c2"); return c.Status == StatusSent })
		var ids []string
		after := ""
		for {
			page, next, err := e.svc.List(e.ctx, ListOptions{Limit: 2, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page {
				ids = append(ids, s.ID)
				if s.ID == "c2" && (s.Progress.Sent != 4 || s.StartedAt == nil || s.FinishedAt == nil || s.Subject != "Hello %first_name%") {
					t.Errorf("c2 summary %+v", s)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
		if fmt.Sprint(ids) != "[c4 c3 c2 c1 c0]" {
			t.Fatalf("paged list %v", ids)
		}
		sent, _, err := e.svc.List(e.ctx, ListOptions{Status: StatusSent})
		if err != nil || len(sent) != 1 || sent[0].ID != "c2" {
			t.Fatalf("sent: %+v %v", sent, err)
		}
		for _, o := range []ListOptions{{Status: "nope"}, {After: "x"}, {After: "1.BAD ID"}} {
			if _, _, err := e.svc.List(e.ctx, o); err == nil {
				t.Errorf("List(%+v) accepted", o)
			}
		}
	})
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
