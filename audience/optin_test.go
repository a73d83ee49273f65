package audience

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var confirmLink = regexp.MustCompile(`https://mail\.shop\.test/confirm/([A-Za-z0-9_.=-]+)`)

// queuedConfirmations returns the confirmation links queued per
// recipient.
func queuedConfirmations(t *testing.T, q *queue.Queue) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	rs, _, err := q.List(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		b, err := q.Body(r.MsgID)
		if err != nil {
			t.Fatal(err)
		}
		// quoted-printable may fold the link: undo soft breaks.
		body := strings.ReplaceAll(string(b), "=\r\n", "")
		m := confirmLink.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("queued message to %s has no confirm link: %s", r.Addr, b)
		}
		out[r.Addr] = append(out[r.Addr], m[1])
	}
	return out
}

// TestDoubleOptIn: a contact of a double opt-in audience is pending; the
// confirmer queues one confirmation through ingest (transactional
// stream) with a signed link, never a second one (a crash before the
// outbox commit is covered by the idempotency key) unless the contact is
// set pending again; GET shows a form and changes nothing,
// POST activates the contact and records the grant with IP and user
// agent; forged, expired and reused-id tokens are refused. Both backends.
func TestDoubleOptIn(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	eachBackend(t, Options{Now: clock.now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)})
		c, err := s.NewConfirmer(ctx, ConfirmerOptions{Submitter: sub, BaseURL: "https://mail.shop.test/", DefaultFrom: "confirm@petrel.test", TTL: 48 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.CreateAudience(ctx, Audience{Name: "news", DoubleOptIn: true})
		if err != nil {
			t.Fatal(err)
		}
		single, err := s.CreateAudience(ctx, Audience{Name: "plain"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetOptInSettings(ctx, a.ID, OptInSettings{From: "news@shop.test", Subject: "Confirm", Body: "no link"}); !IsKind(err, Invalid) {
			t.Fatalf("settings without %%confirm_url%%: %v", err)
		}
		if _, err := s.SetOptInSettings(ctx, a.ID, OptInSettings{From: "news@shop.test", FromName: "Shop", Subject: "Confirm your news",
			Body: "Hi %name%, confirm: %confirm_url%\n", ConsentText: "news-v3"}); err != nil {
			t.Fatal(err)
		}
		ann, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "ann@example.test", Name: ptr("Ann")})
		if err != nil {
			t.Fatal(err)
		}
		bob, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "bob@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.UpsertContact(ctx, single.ID, ContactInput{Email: "carl@example.test"}); err != nil {
			t.Fatal(err)
		}
		if ann.Status != Pending {
			t.Fatalf("new contact of a double opt-in audience is %s, want pending", ann.Status)
		}
		if n, err := c.SendPending(ctx); err != nil || n != 2 {
			t.Fatalf("SendPending = %d, %v; want 2", n, err)
		}
		if n, err := c.SendPending(ctx); err != nil || n != 0 {
			t.Fatalf("second SendPending = %d, %v; want 0", n, err)
		}
		// A crash after the enqueue, before the outbox commit (bob back in
		// the outbox, his send not recorded): the resend is absorbed by
		// the idempotency key.
		if _, err := s.exec(ctx, s.db, `DELETE FROM optin_sends WHERE contact_id = ?`, bob.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.exec(ctx, s.db, `INSERT INTO optin_outbox (contact_id) VALUES (?)`, bob.ID); err != nil {
			t.Fatal(err)
		}
		if n, err := c.SendPending(ctx); err != nil || n != 1 {
			t.Fatalf("SendPending after a lost outbox row = %d, %v; want 1", n, err)
		}
		links := queuedConfirmations(t, q)
		if len(links) != 2 || len(links["ann@example.test"]) != 1 || len(links["bob@example.test"]) != 1 {
			t.Fatalf("queued confirmations %v, want one each for ann and bob", links)
		}
		rs, _, _ := q.List(ctx, "", 10)
		mi, err := q.Message(rs[0].MsgID)
		if err != nil {
			t.Fatal(err)
		}
		if mi.Stream != "transactional" {
			t.Errorf("confirmation stream %q, want transactional", mi.Stream)
		}
		body, _ := q.Body(rs[0].MsgID)
		if !strings.Contains(string(body), "Subject: Confirm your news") || !strings.Contains(string(body), "From: \"Shop\" <news@shop.test>") {
			t.Errorf("confirmation header: %s", body)
		}

		srv := httptest.NewServer(c.Handler())
		defer srv.Close()
		do := func(method, tok string) (int, string) {
			req, _ := http.NewRequest(method, srv.URL+"/confirm/"+tok, nil)
			req.Header.Set("User-Agent", "TestBrowser/1.0")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		status := func(id int64) Status {
			ct, err := s.Contact(ctx, a.ID, id)
			if err != nil {
				t.Fatal(err)
			}
			return ct.Status
		}
		annTok := links["ann@example.test"][0]
		if code, page := do("GET", annTok); code != 200 || !strings.Contains(page, `<form method="post">`) || status(ann.ID) != Pending {
			t.Fatalf("GET confirm = %d (status %s): %s", code, status(ann.ID), page)
		}
		forged := annTok[:len(annTok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(annTok, "AA")]
		for _, tok := range []string{forged, "x", "", strings.Repeat("A", 200), "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"} {
			if code, _ := do("POST", tok); code != 400 && code != 404 && code != 405 {
				t.Errorf("POST forged token %q = %d, want 400", tok, code)
			}
		}
		if code, _ := do("POST", forged); code != 400 {
			t.Errorf("POST forged token = %d, want 400", code)
		}
		if status(ann.ID) != Pending {
			t.Fatal("a forged token changed the status")
		}
		clock.add(time.Hour)
		if code, page := do("POST", annTok); code != 200 || !strings.Contains(page, "is subscribed") {
			t.Fatalf("POST confirm = %d: %s", code, page)
		}
		if status(ann.ID) != Active {
			t.Fatalf("after confirming: %s, want active", status(ann.ID))
		}
		ledger, err := s.Consent(ctx, a.ID, ann.ID)
		if err != nil || len(ledger) != 1 {
			t.Fatalf("ledger %+v, %v", ledger, err)
		}
		g := ledger[0]
		if g.Action != Granted || g.Source != "double_opt_in" || g.Purpose != "marketing" || g.IP != "127.0.0.1" || g.UserAgent != "TestBrowser/1.0" ||
			g.TextVersion != "news-v3" || !g.At.Equal(clock.now().Truncate(time.Second)) {
			t.Errorf("ledger grant %+v", g)
		}
		// Following the link again changes nothing (one grant).
		if code, _ := do("POST", annTok); code != 200 {
			t.Errorf("second POST = %d", code)
		}
		if l, _ := s.Consent(ctx, a.ID, ann.ID); len(l) != 1 {
			t.Errorf("second POST appended to the ledger: %+v", l)
		}
		// Ann set pending again (by the API) gets a new confirmation.
		if _, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "ann@example.test", Status: Pending}); err != nil {
			t.Fatal(err)
		}
		if n, err := c.SendPending(ctx); err != nil || n != 1 {
			t.Fatalf("SendPending after ann was set pending = %d, %v; want 1", n, err)
		}
		if l := queuedConfirmations(t, q); len(l["ann@example.test"]) != 2 || len(l["bob@example.test"]) != 1 {
			t.Fatalf("confirmations after ann was set pending: %v", l)
		}
		// Bob's link expires unused.
		clock.add(48 * time.Hour)
		if code, page := do("POST", links["bob@example.test"][0]); code != 410 || !strings.Contains(page, "expired") {
			t.Errorf("expired POST = %d: %s", code, page)
		}
		if code, _ := do("GET", links["bob@example.test"][0]); code != 410 {
			t.Errorf("expired GET = %d", code)
		}
		if status(bob.ID) != Pending {
			t.Errorf("expired link changed the status to %s", status(bob.ID))
		}
		// A token is bound to its address: once bob is deleted and the id
		// belongs to someone else (SQLite reuses the highest id), bob's
		// token does not confirm the newcomer.
		if err := s.DeleteContact(ctx, a.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if code, _ := do("POST", links["bob@example.test"][0]); code != 400 {
			t.Errorf("token of a deleted contact = %d, want 400", code)
		}
	})
}
