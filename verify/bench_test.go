package verify

import (
	"context"
	"testing"
	"time"
)

func BenchmarkParseAddress(b *testing.B) {
	for _, s := range []string{"john.doe+tag@example.com", `"john doe"@example.com`, "用户@例子.测试"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseAddress(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSuggest(b *testing.B) {
	l, err := LoadLists(ListPaths{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l.Suggest("hotmial.com")
	}
}

// BenchmarkVerifyMany measures bulk throughput over the loopback
// fixture: 50 domains x 200 addresses per op, with a fresh Verifier each
// op so no result comes from cache.
func BenchmarkVerifyMany(b *testing.B) {
	f := newFixture(b)
	addrs, _ := bulkFixture(f, 200)
	var total time.Duration
	for b.Loop() {
		v := f.verifier(b, testConfig(), "")
		start := time.Now()
		v.VerifyMany(context.Background(), addrs, nil)
		total += time.Since(start)
		v.Close()
	}
	b.ReportMetric(float64(len(addrs)*b.N)/total.Seconds(), "addresses/s")
}
