package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

func TestDeadHostBackoff(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHosts(time.Minute, time.Hour)
	h.now = func() time.Time { return now }
	a := netip.MustParseAddrPort("127.0.0.2:25")
	steps := []struct {
		fail bool
		want time.Duration // how long a is down afterwards (0: up)
	}{
		{true, time.Minute}, {true, 2 * time.Minute}, {true, 4 * time.Minute}, {true, 8 * time.Minute},
		{true, 16 * time.Minute}, {true, 32 * time.Minute}, {true, time.Hour}, {true, time.Hour},
		{false, 0}, {true, time.Minute},
	}
	for i, s := range steps {
		probe, down, err := h.acquire(context.Background(), a)
		if err != nil || down != "" || !probe {
			t.Fatalf("step %d: acquire after the down time = %v %q %v, want a probe", i, probe, down, err)
		}
		if s.fail {
			h.failed(a, "connect: refused")
		} else {
			h.succeeded(a)
		}
		h.endProbe(a)
		if s.want == 0 {
			if _, down, _ := h.acquire(context.Background(), a); down != "" || h.down() != 0 {
				t.Fatalf("step %d: still down after a success: %q", i, down)
			}
			h.failed(a, "x") // back to probing for the next step
			h.succeeded(a)
			h.m[a].up = false
			continue
		}
		now = now.Add(s.want - time.Second)
		_, down, _ = h.acquire(context.Background(), a)
		if !strings.Contains(down, "marked down until") || h.down() != 1 {
			t.Fatalf("step %d: %v before the end of a %v down time: %q", i, s.want-time.Second, s.want, down)
		}
		now = now.Add(time.Second)
	}
}

// TestDeadHostCache: 20 messages for a destination whose only MX does
// not take connections cost one connection attempt, not 20, and are all
// deferred at once, each saying until when the host is marked down.
func TestDeadHostCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		// accept: a listener that accepts and closes at once (counting
		// the attempts); otherwise nothing listens (connection refused).
		accept bool
	}{{"connection refused", false}, {"closed before greeting", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.dns.Add("dead.test. 300 IN MX 10 mx.dead.test.", "mx.dead.test. 300 IN A 127.0.0.2")
			var accepted atomic.Int64
			var ln net.Listener
			if tc.accept {
				var err error
				ln, err = net.Listen("tcp", f.addr("127.0.0.2"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						accepted.Add(1)
						c.Close()
					}
				}()
			}
			q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Hour}, MaxLifetime: 24 * time.Hour,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			const n = 20
			for i := range n {
				if _, err := q.Enqueue(context.Background(), queue.Envelope{From: "s@src.test",
					Recipients: []string{fmt.Sprintf("r%d@dead.test", i)}}, []byte(testBody)); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			d := f.deliverer(t, func(o *Options) {
				o.Config.Workers = n // every message in flight at once
				o.Registry = reg
			})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); d.Run(ctx, q) }()
			start := time.Now()
			ok := testnet.Wait(5*time.Second, func() bool { return q.Stats().Deferred == n })
			took := time.Since(start)
			cancel()
			wg.Wait()
			if !ok {
				t.Fatalf("not all deferred: %+v", q.Stats())
			}
			if took > 2*time.Second {
				t.Errorf("deferring %d messages took %v", n, took)
			}
			if tc.accept && accepted.Load() != 1 {
				t.Errorf("%d connection attempts for %d messages, want 1", accepted.Load(), n)
			}
			rs, _, err := q.List(context.Background(), "", 100)
			if err != nil {
				t.Fatal(err)
			}
			markedDown := 0
			for _, r := range rs {
				if strings.Contains(r.LastReply, "marked down until") && r.Reason == "hostdown" && r.Enhanced == "4.4.1" {
					markedDown++
				}
			}
			if markedDown != n-1 {
				t.Errorf("%d of %d recipients deferred as marked down, want %d (one connects):\n%+v", markedDown, n, n-1, rs)
			}
			if got := metricValue(t, reg, "petrel_delivery_host_down_deferrals_total"); got != n-1 {
				t.Errorf("petrel_delivery_host_down_deferrals_total = %v, want %d", got, n-1)
			}
			if got := metricValue(t, reg, "petrel_delivery_hosts_down"); got != 1 {
				t.Errorf("petrel_delivery_hosts_down = %v, want 1", got)
			}

			// The host comes up: an operator's flush tries it at once,
			// although it is still marked down.
			if ln != nil {
				ln.Close()
			}
			mx := f.startMX(t, "127.0.0.2", testnet.MXOptions{})
			ctx, cancel = context.WithCancel(context.Background())
			wg.Add(1)
			go func() { defer wg.Done(); d.Run(ctx, q) }()
			defer func() { cancel(); wg.Wait() }()
			if k, err := q.Flush(context.Background()); err != nil || k != n {
				t.Fatalf("flush: %d %v", k, err)
			}
			if !testnet.Wait(5*time.Second, func() bool { return q.Stats().Live == 0 }) {
				t.Fatalf("flushed mail not delivered to the recovered host: %+v", q.Stats())
			}
			if mx.Count() != n {
				t.Fatalf("MX got %d, want %d", mx.Count(), n)
			}
		})
	}
}

// metricValue gathers reg and returns the value of the unlabelled
// counter or gauge name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
