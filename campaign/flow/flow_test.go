package flow

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// newPGDatabase creates a fresh PostgreSQL database (dropped after the
// test); unreachable PostgreSQL fails under CI=true.
func newPGDatabase(t testing.TB) string {
	t.Helper()
	server := "postgres://postgres@127.0.0.1:5432"
	if v := os.Getenv("PETREL_TEST_POSTGRES"); v != "" {
		server = strings.TrimRight(v, "/")
	}
	admin, err := sql.Open("pgx", server+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable (CI needs it): %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "petrel_flow_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	})
	return server + "/" + name + "?sslmode=disable"
}

// clock is an injected, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration)     { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *clock) Set(t time.Time)         { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newClock(t time.Time) *clock        { return &clock{t: t} }
func (c *clock) advance(d time.Duration) { c.Add(d) }

// fixture is a real ESP database (one backend), a real Pebble queue and
// ingest's real entry point, with the shipped example flows applied.
type fixture struct {
	t    testing.TB
	ctx  context.Context
	aud  *audience.Store
	tpl  *campaign.Templates
	q    *queue.Queue
	sub  *ingest.Submitter
	clk  *clock
	svc  *Service
	news audience.Audience
	dsn  string
	opts Options
}

func eachBackend(t *testing.T, f func(t *testing.T, fx *fixture)) {
	for _, b := range []string{"sqlite", "postgres"} {
		t.Run(b, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "esp.db")
			if b == "postgres" {
				dsn = newPGDatabase(t)
			}
			f(t, newFixture(t, dsn, Options{}))
		})
	}
}

func newFixture(t *testing.T, dsn string, opts Options) *fixture { return newFixtureTB(t, dsn, opts) }

func newFixtureTB(t testing.TB, dsn string, opts Options) *fixture {
	ctx := context.Background()
	// Tuesday 10:00 UTC: outside the examples' quiet hours.
	clk := newClock(time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC))
	aud, err := audience.Open(ctx, dsn, audience.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close() })
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	tpl, err := campaign.NewTemplates(ctx, aud.DB(), aud.Postgres())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, ctx: ctx, aud: aud, tpl: tpl, q: q, clk: clk, dsn: dsn,
		sub: ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)})}
	fx.news, err = aud.CreateAudience(ctx, audience.Audience{Name: "newsletter", Fields: []audience.Field{{Name: "plan", Type: audience.Text}, {Name: "renewal", Type: audience.Date}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []campaign.Template{
		{CallName: "welcome-1", Type: "marketing", Content: campaign.Content{Subject: "Welcome %first_name%", Text: "Hello %first_name%. Unsubscribe: %unsubscribe_url%"}, Variables: []string{"first_name"}},
		{CallName: "welcome-2", Type: "marketing", Content: campaign.Content{Subject: "Tips", Text: "Tips. %unsubscribe_url%"}},
		{CallName: "welcome-3", Type: "marketing", Content: campaign.Content{Subject: "Offer", Text: "Offer. %unsubscribe_url%"}},
		{CallName: "cart-reminder-1", Type: "marketing", Content: campaign.Content{Subject: "Your cart", Text: "Finish at %event.cart_url%. %unsubscribe_url%"}, Variables: []string{"event.cart_url"}},
		{CallName: "cart-reminder-2", Type: "marketing", Content: campaign.Content{Subject: "Still there?", Text: "Cart %event.cart_url%. %unsubscribe_url%"}, Variables: []string{"event.cart_url"}},
	} {
		if _, err := tpl.Save(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	opts.Now = clk.Now
	fx.opts = opts
	fx.open()
	for _, name := range []string{"welcome.toml", "abandoned-cart.toml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "flows", name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseTOML(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := fx.svc.Save(ctx, f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return fx
}

// open (re)starts the flow service on the same database, as a restart.
func (fx *fixture) open() {
	if fx.svc != nil {
		fx.svc.Close()
	}
	svc, err := New(fx.ctx, fx.aud, fx.tpl, fx.sub, func(stream, rcpt string) string { return "https://u.test/" + rcpt }, fx.opts)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.svc = svc
	fx.t.Cleanup(svc.Close)
}

// run steps the runner until it has nothing to do.
func (fx *fixture) run() { fx.t.Helper(); fx.runWith(nil) }

// runWith is run with an event log.
func (fx *fixture) runWith(log EventLog) {
	fx.t.Helper()
	for i := 0; i < 1000; i++ {
		n, err := fx.svc.Step(fx.ctx, log)
		if err != nil {
			fx.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	fx.t.Fatal("runner does not settle")
}

func (fx *fixture) contact(email string, tags ...string) audience.Contact {
	fx.t.Helper()
	c, _, err := fx.aud.UpsertContact(fx.ctx, fx.news.ID, audience.ContactInput{Email: email, Name: ptr("Ada Lovelace"), Tags: tags})
	if err != nil {
		fx.t.Fatal(err)
	}
	if _, err := fx.aud.RecordConsent(fx.ctx, fx.news.ID, c.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "form"}); err != nil {
		fx.t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// mail returns the subjects and bodies queued per recipient.
func (fx *fixture) mail() map[string][]string {
	fx.t.Helper()
	out := map[string][]string{}
	for after := ""; ; {
		rs, next, err := fx.q.List(fx.ctx, after, 10000)
		if err != nil {
			fx.t.Fatal(err)
		}
		for _, r := range rs {
			body, err := fx.q.Body(r.MsgID)
			if err != nil {
				fx.t.Fatal(err)
			}
			out[r.Addr] = append(out[r.Addr], string(body))
		}
		if next == "" {
			return out
		}
		after = next
	}
}

func (fx *fixture) journal(email string) []string {
	js, err := fx.svc.Journey(fx.ctx, email, 1000)
	if err != nil {
		fx.t.Fatal(err)
	}
	var out []string
	for _, j := range js {
		out = append(out, j.Flow+"/"+j.Step+"/"+j.Kind)
	}
	return out
}

// TestValidation: a flow is checked when saved: shape errors, cycles,
// unknown templates, fields, steps and segments are refused with the step
// named; a good flow saves as version 1, 2, ...
func TestValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		base := func() Flow {
			return Flow{ID: "f", Audience: fx.news.ID, From: "a@shop.example", Trigger: Trigger{Type: TriggerEvent, Event: "go"},
				Steps: []Step{{ID: "s1", Type: StepSend, Template: "welcome-2"}}}
		}
		cases := []struct {
			name string
			mod  func(*Flow)
			want string
		}{
			{"cycle", func(f *Flow) {
				f.Steps = []Step{{ID: "a", Type: StepWait, Duration: Duration(time.Hour)}, {ID: "b", Type: StepCondition, If: &Condition{HasTag: "x"}, Then: "a"}}
			}, "cycle"},
			{"self loop", func(f *Flow) { f.Steps = []Step{{ID: "a", Type: StepTag, Tag: "x", Next: "a"}} }, "cycle"},
			{"unknown template", func(f *Flow) { f.Steps[0].Template = "nope" }, `unknown template "nope"`},
			{"unknown field", func(f *Flow) { f.Steps = []Step{{ID: "u", Type: StepField, Field: "shoe_size", Value: "9"}} }, `unknown field "shoe_size"`},
			{"unknown step", func(f *Flow) { f.Steps[0].Next = "zz" }, `unknown step "zz"`},
			{"bad segment", func(f *Flow) {
				f.Steps = []Step{{ID: "c", Type: StepCondition, If: &Condition{Segment: "shoe_size > 3"}}}
			}, "step c: segment"},
			{"unknown saved segment", func(f *Flow) { f.Steps = []Step{{ID: "c", Type: StepCondition, If: &Condition{SavedSegment: "vip"}}} }, "no saved segment"},
			{"bad trigger", func(f *Flow) { f.Trigger = Trigger{Type: "sometimes"} }, "trigger type"},
			{"date trigger on text field", func(f *Flow) { f.Trigger = Trigger{Type: TriggerDate, Field: "plan"} }, "not a date field"},
			{"event wait without timeout", func(f *Flow) { f.Steps = []Step{{ID: "w", Type: StepWait, Event: "x"}} }, "timeout"},
			{"no steps", func(f *Flow) { f.Steps = nil }, "at least one step"},
			{"bad quiet hours", func(f *Flow) { f.QuietHours = &QuietHours{Start: "25:00", End: "08:00"} }, "quiet_hours"},
			{"no unsubscribe link", func(f *Flow) {
				if _, err := fx.tpl.Save(fx.ctx, campaign.Template{CallName: "bare", Content: campaign.Content{Subject: "x", Text: "x"}}); err != nil {
					t.Fatal(err)
				}
				f.Steps[0].Template = "bare"
			}, "unsubscribe_url"},
			{"unknown audience", func(f *Flow) { f.Audience, f.AudienceName = 0, "nobody" }, "no audience"},
		}
		for _, c := range cases {
			f := base()
			c.mod(&f)
			_, err := fx.svc.Save(fx.ctx, f)
			if err == nil || !isInvalid(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: err %v, want a ValidationError with %q", c.name, err, c.want)
			}
		}
		f := base()
		for v := int64(1); v <= 2; v++ {
			got, err := fx.svc.Save(fx.ctx, f)
			if err != nil || got.Version != v || got.Steps[0].TemplateVersion != 1 {
				t.Fatalf("save: %+v %v", got, err)
			}
		}
		if _, err := ParseTOML([]byte("id = \"x\"\nbogus = 1\n")); err == nil || !strings.Contains(err.Error(), "bogus") {
			t.Fatalf("unknown TOML key: %v", err)
		}
	})
}

// TestWelcomeSeries: the shipped welcome flow: joining sends the first
// message at once, the second after two days, and (no "customer" tag) the
// third three days later; each exactly once, personalised; the journey
// and counts say so. A contact without consent is skipped.
func TestWelcomeSeries(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		fx.contact("ada@example.test")
		noConsent, _, err := fx.aud.UpsertContact(fx.ctx, fx.news.ID, audience.ContactInput{Email: "bob@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		_ = noConsent
		fx.run()
		if m := fx.mail(); len(m["ada@example.test"]) != 1 || !strings.Contains(m["ada@example.test"][0], "Subject: Welcome Ada") ||
			!strings.Contains(m["ada@example.test"][0], "https://u.test/ada@example.test") || len(m["bob@example.test"]) != 0 {
			t.Fatalf("after joining: %v", m)
		}
		fx.clk.Add(47 * time.Hour)
		fx.run()
		if n := len(fx.mail()["ada@example.test"]); n != 1 {
			t.Fatalf("%d messages before two days", n)
		}
		fx.clk.Add(time.Hour)
		fx.run()
		if n := len(fx.mail()["ada@example.test"]); n != 2 {
			t.Fatalf("%d messages after two days", n)
		}
		st, err := fx.svc.Stats(fx.ctx, "welcome")
		if err != nil || st.Waiting["wait-3d"] != 2 || st.Entered != 2 || st.Sent != 2 {
			t.Fatalf("stats %+v %v", st, err)
		}
		fx.clk.Add(3 * 24 * time.Hour)
		fx.run()
		fx.run()
		m := fx.mail()
		if len(m["ada@example.test"]) != 3 || !strings.Contains(m["ada@example.test"][2], "Subject: Offer") {
			t.Fatalf("after five days: %d messages", len(m["ada@example.test"]))
		}
		want := "welcome/welcome-1/entered welcome/welcome-1/sent welcome/wait-2d/waiting welcome/wait-2d/waited welcome/welcome-2/sent welcome/wait-3d/waiting welcome/wait-3d/waited welcome/bought/condition welcome/welcome-3/sent welcome/done/exited"
		if got := strings.Join(fx.journal("ada@example.test"), " "); got != want {
			t.Fatalf("journey\n got %s\nwant %s", got, want)
		}
		if got := fx.journal("bob@example.test"); len(got) < 2 || got[1] != "welcome/welcome-1/skipped" {
			t.Fatalf("bob: %v", got)
		}
		st, _ = fx.svc.Stats(fx.ctx, "welcome")
		if st.Sent != 3 || st.Exited[KindExited] != 2 || st.Active != 0 { // bob went through, every send skipped
			t.Fatalf("final stats %+v", st)
		}
	})
}

// TestAbandonedCart: the shipped cart flow: a custom event with a cart
// URL sends the first reminder an hour later with the URL in it; a
// second cart's run (the contact is in the flow) does not start a second
// run; the order (goal) ends the run as converted, so there is no second
// reminder. Unknown contacts are refused unless created explicitly.
func TestAbandonedCart(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		fx.contact("ada@example.test")
		fx.run() // welcome-1
		post := func(name string, props map[string]any) {
			t.Helper()
			if _, err := fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: name, Properties: props}); err != nil {
				t.Fatal(err)
			}
		}
		post("cart_abandoned", map[string]any{"cart_url": "https://shop.example/cart/42"})
		fx.run()
		fx.clk.Add(30 * time.Minute)
		post("cart_abandoned", map[string]any{"cart_url": "https://shop.example/cart/43"})
		fx.run()
		fx.clk.Add(31 * time.Minute)
		fx.run()
		var carts []string
		for _, b := range fx.mail()["ada@example.test"] {
			if strings.Contains(b, "Subject: Your cart") {
				carts = append(carts, b)
			}
		}
		if len(carts) != 1 || !strings.Contains(carts[0], "https://shop.example/cart/42") {
			t.Fatalf("reminders: %v", carts)
		}
		post("order_placed", nil)
		fx.run()
		fx.clk.Add(25 * time.Hour)
		fx.run()
		for _, b := range fx.mail()["ada@example.test"] {
			if strings.Contains(b, "Still there?") {
				t.Fatal("second reminder after the order")
			}
		}
		st, _ := fx.svc.Stats(fx.ctx, "abandoned-cart")
		if st.Converted != 1 || st.Entered != 1 || st.Exited[KindConverted] != 1 {
			t.Fatalf("stats %+v", st)
		}
		// The welcome run converted too (same goal).
		if st, _ := fx.svc.Stats(fx.ctx, "welcome"); st.Converted != 1 {
			t.Fatalf("welcome stats %+v", st)
		}
		if _, err := fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "nobody@example.test", Name: "cart_abandoned"}); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("unknown contact: %v", err)
		}
		ids, err := fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "new@example.test", Name: "cart_abandoned", Audience: fx.news.ID, Create: true})
		if err != nil || len(ids) != 1 {
			t.Fatalf("create: %v %v", ids, err)
		}
	})
}

// TestFlood: 10,000 custom events for one contact posted concurrently
// start one run and send one message.
func TestFlood(t *testing.T) {
	fx := newFixture(t, filepath.Join(t.TempDir(), "esp.db"), Options{})
	fx.contact("ada@example.test")
	fx.run()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000/16+1; i++ {
				if _, err := fx.svc.PostEvent(fx.ctx, CustomEvent{Contact: "ada@example.test", Name: "cart_abandoned", Properties: map[string]any{"cart_url": fmt.Sprint(i)}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fx.run()
	fx.clk.Add(2 * time.Hour)
	fx.run()
	st, _ := fx.svc.Stats(fx.ctx, "abandoned-cart")
	if st.Entered != 1 || st.Sent != 1 {
		t.Fatalf("flood: %+v", st)
	}
}

// TestVersionsAndRestart: a run waiting on version 1 finishes on version
// 1 after the flow is edited (new entries take version 2); timers that
// came due while the service was down run after a restart, oldest first;
// a send whose commit was lost (crash after SubmitBatch) is resubmitted
// and the spool's idempotency key keeps it to one message; a clock that
// jumps back delays timers, and one that jumps forward runs them.
func TestVersionsAndRestart(t *testing.T) {
	eachBackend(t, func(t *testing.T, fx *fixture) {
		fx.contact("a@example.test")
		fx.run()
		v1, _ := fx.svc.Get(fx.ctx, "welcome", 0)
		v2 := v1
		v2.Steps = append([]Step(nil), v1.Steps...)
		v2.Steps[2] = Step{ID: "welcome-2b", Type: StepSend, Template: "welcome-3"}
		if saved, err := fx.svc.Save(fx.ctx, v2); err != nil || saved.Version != 2 {
			t.Fatalf("v2: %+v %v", saved, err)
		}
		fx.clk.Add(time.Hour)
		fx.contact("b@example.test")
		fx.run()
		// Down for a week: both waits come due.
		fx.svc.Close()
		fx.svc = nil
		fx.clk.Add(7 * 24 * time.Hour)
		fx.open()
		fx.run()
		fx.run()
		if got := fx.journal("a@example.test"); got[4] != "welcome/welcome-2/sent" {
			t.Fatalf("a (version 1): %v", got)
		}
		if got := fx.journal("b@example.test"); got[4] != "welcome/welcome-2b/sent" {
			t.Fatalf("b (version 2): %v", got)
		}
		// Crash between the submit and the commit: the submit goes through,
		// the commit does not; the retry is a no-op at the spool.
		fx.contact("c@example.test")
		var once sync.Once
		fx.svc.sub = crashAfterSubmit{fx.sub, &once}
		if _, err := fx.svc.Step(fx.ctx, nil); err == nil || !strings.Contains(err.Error(), "crash") {
			t.Fatalf("no simulated crash: %v", err)
		}
		fx.svc.sub = fx.sub
		fx.run()
		if n := len(fx.mail()["c@example.test"]); n != 1 {
			t.Fatalf("c got %d messages after a lost commit", n)
		}
		// Clock jumps back a day: c's 2-day wait is not due after 2 days of
		// the new clock minus... it runs only once the stored due time is reached.
		fx.clk.Add(-24 * time.Hour)
		fx.clk.Add(48 * time.Hour)
		fx.run()
		if n := len(fx.mail()["c@example.test"]); n != 1 {
			t.Fatalf("c got %d messages after a backward jump", n)
		}
		fx.clk.Add(24 * time.Hour)
		fx.run()
		if n := len(fx.mail()["c@example.test"]); n != 2 {
			t.Fatalf("c got %d messages once the stored due time passed", n)
		}
	})
}

// crashAfterSubmit submits, then fails the first time as if the process
// died before the runner's commit.
type crashAfterSubmit struct {
	campaign.Submitter
	once *sync.Once
}

func (c crashAfterSubmit) SubmitBatch(ctx context.Context, subs []ingest.Submission) ([]ingest.Receipt, error) {
	rcs, err := c.Submitter.SubmitBatch(ctx, subs)
	crashed := false
	c.once.Do(func() { crashed = true })
	if crashed {
		return nil, errors.New("simulated crash after submit")
	}
	return rcs, err
}
