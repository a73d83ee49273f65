package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// rssMB reads this process's resident set size.
func rssMB(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		testnet.SkipOrFail(t, "no /proc")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// TestQueueMillion queues N one-recipient messages (20,000 by default;
// PETREL_QUEUE_N=1000000 go test -run Million ./queue/ for the full size),
// logs memory, restarts and checks the first batch is handed out at once
// without a spool scan, then drains part of it.
func TestQueueMillion(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PETREL_QUEUE_N"))
	if n <= 0 {
		n = 20000 // the 1M run is bench's queue_1m scenario; this keeps the test's path exercised
	}
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 300)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var peak float64
	var peakMu sync.Mutex
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{fmt.Sprintf("u%d@d%d.test", i, i%1000)}}, body); err != nil {
					t.Error(err)
					return
				}
				if i%100000 == 0 {
					r := rssMB(t)
					peakMu.Lock()
					peak = max(peak, r)
					peakMu.Unlock()
					t.Logf("%d enqueued, %.0f/s, RSS %.0f MB", i, float64(i)/time.Since(start).Seconds(), r)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("enqueued %d in %v (%.0f msgs/s); RSS %.0f MB (peak %.0f), Go heap in use %.0f MB; stats %+v",
		n, el.Round(time.Millisecond), float64(n)/el.Seconds(), rssMB(t), peak, float64(ms.HeapInuse)/(1<<20), q.Stats())
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	q, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	opened := time.Since(start)
	b, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	s := q.Stats()
	if s.Queued != int64(n) {
		t.Fatalf("after restart stats %+v", s)
	}
	t.Logf("restart: Open %v, first batch %v (msg %s)", opened.Round(time.Microsecond), first.Round(time.Microsecond), b.MsgID)
	if first > 5*time.Second {
		t.Fatalf("first batch after %v", first)
	}
	// Drain a slice of it through Next+Complete with 32 workers.
	drain := int64(min(100000, n/2))
	var done atomic.Int64
	start = time.Now()
	q.Complete(ctx, b, results(b, Delivered, 250, "ok"))
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Add(1) <= drain {
				b, err := q.Next(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if err := q.Complete(ctx, b, results(b, Delivered, 250, "ok")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el = time.Since(start)
	runtime.ReadMemStats(&ms)
	t.Logf("delivered %d in %v (%.0f rcpts/s); RSS %.0f MB, Go heap in use %.0f MB; stats %+v",
		drain, el.Round(time.Millisecond), float64(drain)/el.Seconds(), rssMB(t), float64(ms.HeapInuse)/(1<<20), q.Stats())
}
