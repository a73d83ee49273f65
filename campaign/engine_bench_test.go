package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/dkim"
	"github.com/petrel-mta/petrel/queue"
	"github.com/petrel-mta/petrel/tracking"
)

// benchContactsEnv sets how many contacts BenchmarkCampaignSend seeds
// (default 1,000,000).
const benchContactsEnv = "PETREL_BENCH_CONTACTS"

// newsletter20KB is a ~20 KB personalised HTML newsletter
// (testdata/newsletter-20kb.html, also sent by bench's
// BenchmarkCampaignE2E): a greeting with a fallback, a custom field, ~30
// links (half of them to the landing domain shop.test), images and the
// unsubscribe link.
func newsletter20KB(tb testing.TB) string {
	raw, err := os.ReadFile("testdata/newsletter-20kb.html")
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

// BenchmarkCampaignSend is the campaign engine end to end up to the
// queue: N contacts (PETREL_BENCH_CONTACTS, default 1,000,000) seeded in
// SQLite with a custom field and a marketing consent grant; a marketing
// campaign with a ~20 KB personalised HTML template (text part
// generated, compliance footer), open and click tracking, the real
// policy engine (DKIM Ed25519 signing, List-Unsubscribe, suppression
// check) and ingest's SubmitBatch into a real Pebble queue, one synced
// commit per page. It is the Service's own send (Create, then the send
// goroutine's runOnce). Reported: messages/s (wall), CPU µs per message
// (this process's user+system time, the figure to trust on a shared
// machine), peak RSS.
//
//	PETREL_BENCH_CONTACTS=1000000 go test -run '^$' -bench CampaignSend -benchtime 1x -timeout 1h ./campaign
func BenchmarkCampaignSend(b *testing.B) {
	n := 1000000
	if v := os.Getenv(benchContactsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number", benchContactsEnv, v)
		}
	}
	ctx := context.Background()
	dir := b.TempDir()
	aud, err := audience.Open(ctx, filepath.Join(dir, "esp.db"), audience.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer aud.Close()
	a, err := aud.CreateAudience(ctx, audience.Audience{Name: "news", Fields: []audience.Field{{Name: "city", Type: audience.Text}}})
	if err != nil {
		b.Fatal(err)
	}
	seedContacts(ctx, b, aud, a.ID, n)
	pol := benchPolicy(b)
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "mx.petrel.test", Spool: q, Policy: pol, Logger: slog.New(slog.DiscardHandler)})
	svc, err := NewService(ctx, aud, sub, pol.UnsubscribeURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := tracking.NewSigner([]byte(strings.Repeat("s", 32)))
	if err != nil {
		b.Fatal(err)
	}
	svc.SetOptions(Options{Tracking: &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" }}})
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	svc.mu.Lock()
	svc.ctx = sendCtx
	svc.mu.Unlock()

	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("bench-%d", i)
		if _, err := svc.Create(ctx, Spec{ID: id, Audience: a.ID, From: "news@shop.test", FromName: "Shop",
			Subject: "%first_name|Hello%, this week in %city|town%", Preheader: "New arrivals, 20% off",
			HTML: newsletter20KB(b), PostalAddress: "Shop Ltd, 1 Harbour Road, Taipei", PageSize: 1000}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.move(ctx, id, "send", []string{StatusDraft}, StatusSending, nil); err != nil {
			b.Fatal(err)
		}
		peak := startPeakRSS()
		start, cpu0 := time.Now(), processCPU()
		if err := svc.runOnce(sendCtx, id, nil); err != nil {
			b.Fatal(err)
		}
		el, cpu := time.Since(start), processCPU()-cpu0
		rss := peak()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.Logf("Go heap: in use %d MB, from the OS %d MB, total of the runtime %d MB", ms.HeapInuse>>20, ms.HeapSys>>20, ms.Sys>>20)
		c, err := svc.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if c.Status != StatusSent || c.Progress.Sent != int64(n) {
			b.Fatalf("campaign %s: status %s, sent %d of %d, skipped %v", id, c.Status, c.Progress.Sent, n, c.Progress.Skipped)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/msg")
		b.ReportMetric(rss, "peak-RSS-MB")
		b.Logf("%d messages in %v (%.0f msgs/s), CPU %v (%.1f µs/msg, %.0f msgs per CPU-second), peak RSS %.0f MB",
			n, el.Round(time.Millisecond), float64(n)/el.Seconds(), cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n), float64(n)/cpu.Seconds(), rss)
	}
}

// seedContacts inserts n active contacts (name, city) with a marketing
// grant each, in SQL (the setup, not the measured work).
func seedContacts(ctx context.Context, tb testing.TB, aud *audience.Store, audienceID int64, n int) {
	tb.Helper()
	db := aud.DB()
	now := time.Now().Unix()
	if _, err := db.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM seq WHERE i < ?)
		INSERT INTO contacts (audience_id, email, email_key, status, name, fields, created_at, updated_at)
		SELECT ?, 'c' || i || '@example.test', 'c' || i || '@example.test', 'active', 'Contact ' || i,
		       jsonb(CASE i % 3 WHEN 0 THEN '{"city":"Taipei"}' WHEN 1 THEN '{"city":"Oslo"}' ELSE '{}' END), ?, ? FROM seq`, n, audienceID, now, now); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO consent (contact_id, purpose, action, at, source, ip, user_agent, text_version)
		SELECT id, 'marketing', 'granted', ?, 'import', '', '', '' FROM contacts WHERE audience_id = ?`, now, audienceID); err != nil {
		tb.Fatal(err)
	}
}

// benchPolicy is the real policy engine with an Ed25519 DKIM key for
// shop.test and List-Unsubscribe on the marketing stream.
func benchPolicy(tb testing.TB) *policy.Engine {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	cfg.Hostname = "mx.petrel.test"
	cfg.DNS.Resolver = "127.0.0.1:1"
	cfg.Sending.UnsubscribeURL = "https://mail.shop.test"
	cfg.Bounce.Domain = "bounce.shop.test"
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	if _, err := dkim.Keygen(filepath.Join(cfg.DataDir, "dkim"), "shop.test", "s1", dkim.AlgoEd25519); err != nil {
		tb.Fatal(err)
	}
	e, err := policy.New(policy.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startPeakRSS samples VmRSS every 50 ms until the returned function is
// called, which returns the peak in MB (VmHWM would include the setup).
func startPeakRSS() func() float64 {
	done := make(chan struct{})
	res := make(chan float64, 1)
	go func() {
		peak := rssMB()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				res <- max(peak, rssMB())
				return
			case <-t.C:
				peak = max(peak, rssMB())
			}
		}
	}()
	return func() float64 { close(done); return <-res }
}

// rssMB is this process's resident set in MB.
func rssMB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkBuildTracked20KB is the engine's own per-recipient work on
// the newsletter of BenchmarkCampaignSend: render with tracking compiled
// in (click tokens, open pixel) and build the MIME message; "rewrite" is
// the per-message tracking rewrite it replaces.
//
//	go test -run '^$' -bench BuildTracked20KB -benchmem ./campaign
func BenchmarkBuildTracked20KB(b *testing.B) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("s", 32)))
	if err != nil {
		b.Fatal(err)
	}
	c := withFooter(Content{Subject: "%first_name|Hello%, this week in %city|town%", Preheader: "New arrivals, 20% off", HTML: newsletter20KB(b)}, "Shop Ltd, 1 Harbour Road, Taipei")
	tpl, err := Compile(c, NewFieldSet(append(templateFields, "city")...))
	if err != nil {
		b.Fatal(err)
	}
	tr := &Tracking{Sign: signer.Encode, BaseURL: func(string) string { return "https://t.shop.test" }, Opens: true, Clicks: true}
	s := Send{ID: "bench", Template: tpl, From: &gomail.Address{Name: "Shop", Address: "news@shop.test"}, Stream: "marketing", Tracking: tr,
		Unsubscribe: func(_, rcpt string) string { return "https://mail.shop.test/unsubscribe/" + rcpt }}
	for _, mode := range []string{"precompiled", "rewrite"} {
		b.Run(mode, func(b *testing.B) {
			var tt *trackedTemplate
			if mode == "precompiled" {
				if tt = tr.precompile(tpl, "news@shop.test", true); tt == nil {
					b.Fatal("not precompiled")
				}
			}
			b.ReportAllocs()
			now := time.Now()
			cpu0 := processCPU()
			defer func() { b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
			for i := 0; b.Loop(); i++ {
				r := Recipient{ID: int64(i + 1), Email: "c" + strconv.Itoa(i) + "@example.test", Name: "Contact " + strconv.Itoa(i),
					Values: Map{"first_name": "Contact", "name": "Contact " + strconv.Itoa(i), "city": "Taipei", "email": "c@example.test"}}
				if _, err := s.build(r, "marketing", now, tt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
