package queue

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

var benchBody = bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB

func benchQueue(b *testing.B, o Options) *Queue {
	b.Helper()
	q, err := Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

func benchEnv(i int) Envelope {
	return Envelope{From: "s@src.test", Recipients: []string{fmt.Sprintf("u%d@d%d.test", i, i%50)}, Stream: "t"}
}

// BenchmarkEnqueue: one goroutine, each Enqueue waits for its own fsync.
func BenchmarkEnqueue(b *testing.B) {
	q := benchQueue(b, Options{ReadyLimit: 1 << 30})
	ctx := context.Background()
	b.SetBytes(int64(len(benchBody)))
	for i := 0; b.Loop(); i++ {
		if _, err := q.Enqueue(ctx, benchEnv(i), benchBody); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkEnqueueParallel: 32 goroutines; Pebble's commit pipeline
// groups their synced batches into shared fsyncs.
func BenchmarkEnqueueParallel(b *testing.B) {
	q := benchQueue(b, Options{ReadyLimit: 1 << 30})
	ctx := context.Background()
	b.SetBytes(int64(len(benchBody)))
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := q.Enqueue(ctx, benchEnv(i), benchBody); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// fill enqueues n one-recipient messages with 32 goroutines.
func fill(b *testing.B, q *Queue, n int) {
	b.Helper()
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				if _, err := q.Enqueue(context.Background(), benchEnv(i), benchBody); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkNextComplete: delivery's side with 32 workers over a pre-filled
// queue; each op is one Next and one synced Complete (delivered).
func BenchmarkNextComplete(b *testing.B) {
	q := benchQueue(b, Options{})
	fill(b, q, b.N)
	ctx := context.Background()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bt, err := q.Next(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			if err := q.Complete(ctx, bt, results(bt, Delivered, 250, "250 ok")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rcpts/s")
}

// BenchmarkComplete: only the synced Complete of batches already handed out.
func BenchmarkComplete(b *testing.B) {
	q := benchQueue(b, Options{ReadyLimit: 1 << 30})
	fill(b, q, b.N)
	ctx := context.Background()
	batches := make(chan *Batch, b.N)
	for range b.N {
		bt, err := q.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		batches <- bt
	}
	close(batches)
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bt := <-batches
			if err := q.Complete(ctx, bt, results(bt, Deferred, 451, "451 later")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
}

// BenchmarkPipeline: 32 producers Enqueue while 32 workers Next+Complete;
// one op is one recipient through the whole queue.
func BenchmarkPipeline(b *testing.B) {
	q := benchQueue(b, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	b.ResetTimer()
	var done sync.WaitGroup
	done.Add(b.N)
	for w := range 32 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 32 {
				if _, err := q.Enqueue(ctx, benchEnv(i), benchBody); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				bt, err := q.Next(ctx)
				if err != nil {
					return
				}
				if err := q.Complete(ctx, bt, results(bt, Delivered, 250, "250 ok")); err != nil {
					b.Error(err)
				}
				for range bt.Rcpts {
					done.Done()
				}
			}
		}()
	}
	done.Wait()
	b.StopTimer()
	q.Close()
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rcpts/s")
}

// BenchmarkEnqueueToNext measures how long a just-acknowledged recipient
// takes to come out of Next when delivery is idle (the fast path: no
// periodic scan involved; ScanInterval is an hour here).
func BenchmarkEnqueueToNext(b *testing.B) {
	q := benchQueue(b, Options{ScanInterval: time.Hour})
	ctx := context.Background()
	got := make(chan time.Time, 1)
	go func() {
		for {
			bt, err := q.Next(ctx)
			if err != nil {
				return
			}
			got <- time.Now()
			q.Complete(ctx, bt, results(bt, Delivered, 250, "ok"))
		}
	}()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		if _, err := q.Enqueue(ctx, benchEnv(i), benchBody); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		total += (<-got).Sub(acked)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-ack-to-next")
}

// BenchmarkHoldReleaseAll: Hold("") then Release("") over 5,000 queued
// messages (more arrive meanwhile from 4 synced enqueuers); ns/change is
// per recipient changed.
func BenchmarkHoldReleaseAll(b *testing.B) {
	const n = 5000
	q := benchQueue(b, Options{ReadyLimit: 1 << 30})
	ctx := context.Background()
	fill(b, q, n)
	// Meanwhile ingest goes on: synced commits that a per-message bulk
	// commit would queue behind in Pebble's commit pipeline.
	bg, stop := context.WithCancel(ctx)
	var bgw sync.WaitGroup
	for g := range 4 {
		bgw.Add(1)
		go func() {
			defer bgw.Done()
			for i := n + g; bg.Err() == nil; i += 4 {
				if _, err := q.Enqueue(bg, benchEnv(i), benchBody); err != nil && bg.Err() == nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	defer func() { stop(); bgw.Wait() }()
	changes := 0
	for b.Loop() {
		h, err := q.Hold(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		r, err := q.Release(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		changes += h + r
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(changes, 1)), "ns/change")
	b.ReportMetric(0, "ns/op")
}
