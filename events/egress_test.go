package events

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// TestEgressIPWindows: delivery results carrying their source address
// (over a real queue) are counted per egress IP, a complaint against the
// IP in its event, over 24 h and 7 days (a delivery and a complaint three
// days old count in the 7-day window only); a restarted service rebuilds
// the same counts from the event log (the 7 days, longer than the alarm
// window), each event once.
func TestEgressIPWindows(t *testing.T) {
	var ago atomic.Int64 // how far the queue's clock is behind
	w := newWorldClock(t, testBounceConfig(), nil, func() time.Time { return time.Now().Add(-time.Duration(ago.Load())) })
	ctx, cancel := context.WithCancel(context.Background())
	w.svc.Start(ctx)
	deliver := func(src string, o queue.Outcome, rcpts ...string) {
		t.Helper()
		w.enqueue("marketing", rcpts...)
		b, err := w.q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res := make([]queue.Result, len(b.Rcpts))
		for i, r := range b.Rcpts {
			res[i] = queue.Result{Index: r.Index, Outcome: o, Code: 250, SourceIP: src}
			if o == queue.Bounced {
				res[i].Code, res[i].Enhanced = 550, "5.1.1"
			}
		}
		if err := w.q.Complete(ctx, b, res); err != nil {
			t.Fatal(err)
		}
	}
	ago.Store(int64(72 * time.Hour))
	deliver("192.0.2.2", queue.Delivered, "old@example.test")
	old := queue.Event{Type: "complained", Stream: "marketing", Recipient: "old@example.test", SourceIP: "192.0.2.2", Time: time.Now().Add(-72 * time.Hour)}
	if err := w.q.AppendEvents(ctx, []queue.Event{old}); err != nil {
		t.Fatal(err)
	}
	ago.Store(0)
	deliver("192.0.2.1", queue.Delivered, "a@example.test", "b@example.test")
	deliver("192.0.2.2", queue.Delivered, "c@example.test")
	deliver("192.0.2.2", queue.Bounced, "d@example.test")
	want := map[string]map[string]IPStats{
		"24h0m0s": {
			"192.0.2.1": {IP: "192.0.2.1", counts: counts{Sent: 2, Delivered: 2}},
			"192.0.2.2": {IP: "192.0.2.2", counts: counts{Sent: 2, Delivered: 1, Bounced: 1}, BounceRate: 0.5},
		},
		"168h0m0s": {
			"192.0.2.1": {IP: "192.0.2.1", counts: counts{Sent: 2, Delivered: 2}},
			"192.0.2.2": {IP: "192.0.2.2", counts: counts{Sent: 3, Delivered: 2, Bounced: 1, Complained: 1}, BounceRate: 1.0 / 3, ComplaintRate: 0.5},
		},
	}
	same := func() bool {
		st := w.svc.Stats()
		if len(st.EgressIPs) != 2 {
			return false
		}
		for _, iw := range st.EgressIPs {
			if len(iw.IPs) != len(want[iw.Window]) {
				return false
			}
			for _, ip := range iw.IPs {
				if ip != want[iw.Window][ip.IP] {
					return false
				}
			}
		}
		return true
	}
	if !testnet.Wait(5*time.Second, same) {
		t.Fatalf("live: %+v, want %+v", w.svc.Stats().EgressIPs, want)
	}
	cancel()
	w.svc.Close()
	w.open(nil)
	w.svc.Start(context.Background())
	if !testnet.Wait(5*time.Second, same) {
		t.Fatalf("after a restart: %+v, want %+v", w.svc.Stats().EgressIPs, want)
	}
}

// BenchmarkRebuildEgressIPs measures the start-up rebuild of the egress IP
// windows from a real queue's event log: 100,000 delivery events from 4
// egress IPs, with as many open events between them (skipped undecoded).
func BenchmarkRebuildEgressIPs(b *testing.B) {
	w := newWorld(b, testBounceConfig(), nil)
	ctx := context.Background()
	const n = 100_000
	now := time.Now()
	batch := make([]queue.Event, 0, 2000)
	for i := range n {
		batch = append(batch,
			queue.Event{Type: "delivered", Stream: "marketing", Recipient: "r@example.test", SourceIP: fmt.Sprintf("192.0.2.%d", i%4), Time: now},
			queue.Event{Type: "opened", Stream: "marketing", Recipient: "r@example.test", Time: now})
		if len(batch) == cap(batch) {
			if err := w.q.AppendEvents(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		w.svc.win = newWindows(24 * time.Hour)
		w.svc.rebuildIPs(ctx)
	}
	b.StopTimer()
	if got := w.svc.Stats().EgressIPs[1].IPs[0].Delivered; got != n/4 {
		b.Fatalf("192.0.2.0 delivered %d, want %d", got, n/4)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/event")
}
