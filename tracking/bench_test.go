package tracking

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkClickRedirect is the server-side work of one click (token
// verification, classification, redirect), without the network:
//
//	go test -run '^$' -bench ClickRedirect -benchmem ./tracking
func BenchmarkClickRedirect(b *testing.B) {
	s := newSigner(b, testSecret)
	tok, _ := s.Encode(Token{Kind: Click, Message: "camp7:k42", Recipient: "contact-42", Link: 3, URL: "https://shop.test/p?utm_source=petrel&utm_campaign=winter", Sent: 1})
	h := &Handler{Signer: s}
	req := httptest.NewRequest("GET", ClickPath+tok, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusFound {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkLogRecord is the engagement log's cost per engagement: b.N
// opens and clicks (a quarter of them repeats, as scanners and re-opens
// make) recorded, group-committed with their aggregates and flushed. It
// reports the process CPU per engagement (getrusage: the writer
// goroutine's work included, which ns/op alone hides when cores are
// shared):
//
//	go test -run '^$' -bench LogRecord -benchmem -benchtime 200000x ./tracking
func BenchmarkLogRecord(b *testing.B) {
	l, err := OpenLog(b.TempDir(), LogOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	es := make([]Engagement, 4096)
	for i := range es {
		rcpt := strconv.Itoa(i * 3 / 4) // every fourth repeats a recipient
		es[i] = Engagement{Kind: Open, Campaign: "bench", Message: "bench:" + rcpt, Recipient: rcpt, Time: at, IP: "192.0.2.7",
			UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131", Provider: "google", Stream: "marketing"}
		if i%3 == 0 {
			es[i].Kind, es[i].Link, es[i].URL = Click, i%5, "https://shop.test/p?utm_source=petrel"
		}
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := es[i%len(es)]
		if i >= len(es) {
			e.Message += "-" + strconv.Itoa(i/len(es)) // new (message, recipient) pairs
		}
		l.Record(ctx, e)
	}
	if err := l.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu_ns/engagement")
	if m := l.db.Metrics(); b.N > 1000 {
		b.Logf("cache hits %d misses %d; tablecache hits %d misses %d; L0 files %d sublevels %d; total files %d; flushes %d compactions %d", m.BlockCache.Hits, m.BlockCache.Misses, m.TableCache.Hits, m.TableCache.Misses, m.Levels[0].NumFiles, m.Levels[0].Sublevels, m.Total().NumFiles, m.Flush.Count, m.Compact.Count)
	}
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
