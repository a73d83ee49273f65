package flow

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
)

// seedWaiting creates n contacts (with consent) in fx's audience and n
// runs of flow f waiting at step 0 with timers due at due, directly in
// SQL (the setup, not the measured work).
func seedWaiting(ctx context.Context, tb testing.TB, fx *fixture, f Flow, n int, due time.Time) {
	tb.Helper()
	var ins []audience.ContactInput
	for i := 0; i < n; i++ {
		ins = append(ins, audience.ContactInput{Email: fmt.Sprintf("c%d@example.test", i)})
	}
	for chunk := range slices.Chunk(ins, 5000) {
		res, err := fx.aud.UpsertContacts(ctx, fx.news.ID, chunk, audience.DupUpdate, audience.TagsSkip)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range res {
			if _, err := fx.aud.RecordConsent(ctx, fx.news.ID, r.ID, audience.ConsentRecord{Purpose: "marketing", Action: audience.Granted, Source: "import"}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	db := fx.aud.DB()
	now := fx.clk.Now().Unix()
	if _, err := db.ExecContext(ctx, `INSERT INTO flow_runs (flow_id, version, audience_id, contact_id, step, state, vars, started, updated)
		SELECT ?, ?, audience_id, id, 0, 'waiting', '{"event.code":"x"}', ?, ? FROM contacts WHERE audience_id = ?`, f.ID, f.Version, now, now, fx.news.ID); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO flow_timers (due_at, run_id, step) SELECT ?, id, 0 FROM flow_runs WHERE flow_id = ?`, due.Unix(), f.ID); err != nil {
		tb.Fatal(err)
	}
}

func saveBenchFlow(ctx context.Context, tb testing.TB, fx *fixture) Flow {
	fx.svc.Delete(ctx, "welcome")
	f, err := fx.svc.Save(ctx, Flow{ID: "bench", Audience: fx.news.ID, From: "a@shop.example", Trigger: Trigger{Type: TriggerEvent, Event: "go"},
		Steps: []Step{{ID: "wait", Type: StepWait, Duration: Duration(time.Hour)}, {ID: "send", Type: StepSend, Template: "welcome-2"}}})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// BenchmarkDueTimers10k: 10,000 contacts' waits come due at once; the
// runner ends each wait and runs its send step (render, build, one
// SubmitBatch per page into a real Pebble queue, one commit). Reported:
// steps/s (a wait ending and a send each count as one step).
//
//	go test -run '^$' -bench DueTimers10k -benchtime 1x ./campaign/flow
func BenchmarkDueTimers10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		fx := newFixtureTB(b, filepath.Join(b.TempDir(), "esp.db"), Options{})
		f := saveBenchFlow(ctx, b, fx)
		seedWaiting(ctx, b, fx, f, n, fx.clk.Now())
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		done := 0
		for {
			k, err := fx.svc.processTimers(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if k == 0 {
				break
			}
			done += k
		}
		el, cpu := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		if st, _ := fx.svc.Stats(ctx, "bench"); st.Sent != n || done != n {
			b.Fatalf("sent %d of %d (timers %d)", st.Sent, n, done)
		}
		b.ReportMetric(float64(2*n)/el.Seconds(), "steps/s")
		// Per CPU second of this process: the figure on a shared machine.
		b.ReportMetric(float64(2*n)/cpu.Seconds(), "steps/cpu-s")
		b.StartTimer()
	}
}

// BenchmarkCustomEvents: apps post custom events from 64 concurrent
// clients (PostEvent: contact lookup, group-committed inbox insert,
// answered after the commit). Reported: events/s and the p99 latency.
//
//	go test -run '^$' -bench CustomEvents -benchtime 20000x ./campaign/flow
func BenchmarkCustomEvents(b *testing.B) {
	ctx := context.Background()
	fx := newFixtureTB(b, filepath.Join(b.TempDir(), "esp.db"), Options{})
	saveBenchFlow(ctx, b, fx)
	const contacts = 1000
	var ins []audience.ContactInput
	for i := 0; i < contacts; i++ {
		ins = append(ins, audience.ContactInput{Email: fmt.Sprintf("c%d@example.test", i)})
	}
	if _, err := fx.aud.UpsertContacts(ctx, fx.news.ID, ins, audience.DupUpdate, audience.TagsSkip); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var next int64
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= int64(b.N) {
					break
				}
				t0 := time.Now()
				if _, err := fx.svc.PostEvent(ctx, CustomEvent{Contact: "c" + strconv.FormatInt(i%contacts, 10) + "@example.test", Name: "go", Audience: fx.news.ID,
					Properties: map[string]any{"n": i}}); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/el.Seconds(), "events/s")
		b.ReportMetric(float64(len(lat))/cpu.Seconds(), "events/cpu-s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkMillionWaiting: 1,000,000 contacts wait in a flow (rows in
// flow_runs and flow_timers); the runner's passes over them (nothing
// due, then a page due) keep the process's RSS flat. Reported: RSS in MB
// after the passes (the target is < 300 MB); fails above it.
//
//	go test -run '^$' -bench MillionWaiting -benchtime 1x -timeout 30m ./campaign/flow
func BenchmarkMillionWaiting(b *testing.B) {
	n := 1000000
	if v, err := strconv.Atoi(os.Getenv("PETREL_FLOW_WAITING")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		fx := newFixtureTB(b, filepath.Join(b.TempDir(), "esp.db"), Options{})
		f := saveBenchFlow(ctx, b, fx)
		seedMany(ctx, b, fx, f, n)
		runtime.GC()
		b.StartTimer()
		for i := 0; i < 3; i++ {
			if _, err := fx.svc.Step(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		// One page comes due (the oldest timers) and runs.
		fx.clk.Add(time.Hour + time.Second)
		if _, err := fx.svc.processTimers(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rss := rssMB()
		b.ReportMetric(rss, "RSS-MB")
		if rss > 300 {
			b.Fatalf("RSS %.0f MB with %d waiting contacts", rss, n)
		}
		b.StartTimer()
	}
}

// seedMany inserts n contacts and their waiting runs and timers with
// recursive SQL (fast setup; consent for the first page only).
func seedMany(ctx context.Context, tb testing.TB, fx *fixture, f Flow, n int) {
	db := fx.aud.DB()
	now := fx.clk.Now().Unix()
	for _, q := range []string{
		`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM seq WHERE i < ?)
		 INSERT INTO contacts (audience_id, email, email_key, status, fields, created_at, updated_at)
		 SELECT ?, 'c' || i || '@example.test', 'c' || i || '@example.test', 'active', jsonb('{}'), ?, ? FROM seq`,
	} {
		if _, err := db.ExecContext(ctx, q, n, fx.news.ID, now, now); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO flow_runs (flow_id, version, audience_id, contact_id, step, state, vars, started, updated)
		SELECT ?, ?, audience_id, id, 0, 'waiting', '{}', ?, ? FROM contacts WHERE audience_id = ?`, f.ID, f.Version, now, now, fx.news.ID); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO flow_timers (due_at, run_id, step) SELECT ? + (id % 3600), id, 0 FROM flow_runs WHERE flow_id = ?`, now+3600, f.ID); err != nil {
		tb.Fatal(err)
	}
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
