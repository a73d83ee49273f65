package verify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
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

// BenchmarkVerifyManyDefaults measures a 5,000-address job over 50
// domains with the default politeness (provider_rate 2 sessions/s, burst
// 4, provider_conns 4), once with each domain on its own MX provider
// (bulkFixture) and once with all 50 domains hosted by one provider (MX
// hosts mxNN.provider.test), where the provider's rate limit sets the
// pace. Run with -benchtime 1x: one op takes tens of seconds.
func BenchmarkVerifyManyDefaults(b *testing.B) {
	f := newFixture(b)
	own, _ := bulkFixture(f, 100)
	var shared []string
	for d := range 50 {
		dom := fmt.Sprintf("hosted%02d.test", d)
		f.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 mx%02d.provider.test.", dom, d), fmt.Sprintf("mx%02d.provider.test. 300 IN A %s", d, ipBulk))
		for i := range 100 {
			shared = append(shared, fmt.Sprintf("u%d@%s", i, dom))
		}
	}
	for _, c := range []struct {
		name  string
		addrs []string
	}{{"own-providers", own}, {"one-provider", shared}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := config.Default().Verify
			cfg.ConnectTimeout, cfg.CommandTimeout = testConfig().ConnectTimeout, testConfig().CommandTimeout
			var total time.Duration
			for b.Loop() {
				v := f.verifier(b, cfg, "")
				start := time.Now()
				v.VerifyMany(context.Background(), c.addrs, nil)
				total += time.Since(start)
				v.Close()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/job")
			b.ReportMetric(float64(len(c.addrs)*b.N)/total.Seconds(), "addresses/s")
		})
	}
}
