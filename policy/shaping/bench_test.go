package shaping

import (
	"context"
	"testing"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
)

// These measure the cost of policy checks on delivery's hot path with the
// shipped defaults (rules matched by MX suffix, automation regexes loaded).

func benchShaper(b *testing.B) *Shaper {
	b.Helper()
	s, err := New(config.ShapingConfig{Rules: []config.ShapingRule{{
		Name: "fast", Domains: []string{"fast.test"},
	}}}, "petrel.test", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

var gmailDest = mta.Dest{Domain: "workspace.example", MXHost: "alt1.aspmx.l.google.com", Stream: "marketing"}

func BenchmarkAcquireConnRelease(b *testing.B) {
	s := benchShaper(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := s.AcquireConn(ctx, mta.Dest{Domain: "fast.test", Stream: "marketing"})
			if err != nil {
				b.Fatal(err)
			}
			p.Release()
		}
	})
}

// BenchmarkAcquireMessage is the per-message check: rule match, state
// lookup, suspension check, warm-up check and an unlimited rate limiter
// (so the benchmark never waits).
func BenchmarkAcquireMessage(b *testing.B) {
	cases := []struct {
		name string
		dest mta.Dest
	}{
		{"unlimited-domain-rule", mta.Dest{Domain: "fast.test", Stream: "marketing"}},
		{"default-rule-per-domain", mta.Dest{Domain: "some.example", MXHost: "mx.some.example", Stream: "marketing"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s, err := New(config.ShapingConfig{Rules: []config.ShapingRule{
				{Name: "fast", Domains: []string{"fast.test"}},
				{Name: "default"}, // unlimited default so the benchmark never waits
			}}, "petrel.test", nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.AcquireMessage(ctx, c.dest, "default"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAcquireMessageLimited includes a real rate.Limiter reservation
// (rate high enough never to wait).
func BenchmarkAcquireMessageLimited(b *testing.B) {
	s, err := New(config.ShapingConfig{Rules: []config.ShapingRule{
		{Name: "fast", Domains: []string{"fast.test"}, MaxMessageRate: config.Rate{Count: 1e9, Per: 1e9}},
	}}, "petrel.test", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	d := mta.Dest{Domain: "fast.test", Stream: "marketing"}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AcquireMessage(ctx, d, "default"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	cases := []struct {
		name     string
		code     int
		enhanced string
		text     string
	}{
		{"250", 250, "2.0.0", "OK"},
		{"451-no-match", 451, "4.3.0", "Temporary local problem"},
		{"421-4.7.28-throttle", 421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := benchShaper(b)
			b.ReportAllocs()
			for b.Loop() {
				s.Observe(gmailDest, "default", c.code, c.enhanced, c.text)
			}
		})
	}
}
