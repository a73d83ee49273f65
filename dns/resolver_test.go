package dns

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func startDNS(t testing.TB) *testnet.DNS {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newTestResolver(t testing.TB, d *testnet.DNS) *Resolver {
	t.Helper()
	r, err := NewResolver(d.Addr, 500*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookupMX(t *testing.T) {
	d := startDNS(t)
	d.Add(
		"pref.test. 300 IN MX 20 mx2.pref.test.",
		"pref.test. 300 IN MX 10 MX1.pref.test.",
		"pref.test. 300 IN MX 30 mx3.pref.test.",
		"implicit.test. 300 IN A 127.0.0.5",
		"implicit6.test. 300 IN AAAA ::1",
		"null.test. 300 IN MX 0 .",
		"nohost.test. 300 IN TXT \"v=spf1 -all\"",
		"xn--bcher-kva.test. 300 IN MX 5 mx.bucher.test.",
	)
	d.SetRcode("servfail.test", mdns.RcodeServerFailure)
	d.Drop("timeout.test", true)
	r := newTestResolver(t, d)
	tests := []struct {
		domain string
		want   []MXHost
		err    error
	}{
		{"pref.test", []MXHost{{Host: "mx1.pref.test", Pref: 10}, {Host: "mx2.pref.test", Pref: 20}, {Host: "mx3.pref.test", Pref: 30}}, nil},
		{"PREF.test.", []MXHost{{Host: "mx1.pref.test", Pref: 10}, {Host: "mx2.pref.test", Pref: 20}, {Host: "mx3.pref.test", Pref: 30}}, nil},
		{"implicit.test", []MXHost{{Host: "implicit.test", Implicit: true}}, nil},
		{"implicit6.test", []MXHost{{Host: "implicit6.test", Implicit: true}}, nil},
		{"bücher.test", []MXHost{{Host: "mx.bucher.test", Pref: 5}}, nil},
		{"null.test", nil, ErrNullMX},
		{"nxdomain.test", nil, ErrNoSuchDomain},
		{"nohost.test", nil, ErrNoMailHost},
		{"servfail.test", nil, ErrTemporary},
		{"timeout.test", nil, ErrTemporary},
		{"", nil, ErrNoSuchDomain},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			got, err := r.LookupMX(context.Background(), tc.domain)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestLookupMXEqualPrefRandom(t *testing.T) {
	d := startDNS(t)
	d.Add("eq.test. 300 IN MX 10 a.eq.test.", "eq.test. 300 IN MX 10 b.eq.test.", "eq.test. 300 IN MX 5 first.eq.test.")
	r := newTestResolver(t, d)
	seen := map[string]bool{}
	for range 64 {
		got, err := r.LookupMX(context.Background(), "eq.test")
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Host != "first.eq.test" || len(got) != 3 {
			t.Fatalf("order %v", got)
		}
		seen[got[1].Host] = true
	}
	if !seen["a.eq.test"] || !seen["b.eq.test"] {
		t.Fatalf("equal preferences never shuffled: %v", seen)
	}
}

func TestLookupIPAndTXT(t *testing.T) {
	d := startDNS(t)
	d.Add("h.test. 300 IN AAAA ::1", "h.test. 300 IN A 127.0.0.7", "h.test. 300 IN A 127.0.0.8",
		`t.test. 300 IN TXT "v=spf1 " "-all"`, `t.test. 300 IN TXT "other"`)
	r := newTestResolver(t, d)
	ips, err := r.LookupIP(context.Background(), "h.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.7"), netip.MustParseAddr("127.0.0.8"), netip.MustParseAddr("::1")}
	if len(ips) != 3 || ips[0] != want[0] && ips[0] != want[1] || ips[2] != want[2] {
		t.Fatalf("ips %v", ips)
	}
	if ips, err := r.LookupIP(context.Background(), "[127.0.0.9]"); err != nil || ips[0] != netip.MustParseAddr("127.0.0.9") {
		t.Fatalf("literal: %v %v", ips, err)
	}
	if _, err := r.LookupIP(context.Background(), "t.test"); !errors.Is(err, ErrNoMailHost) {
		t.Fatalf("nodata: %v", err)
	}
	if _, err := r.LookupIP(context.Background(), "missing.test"); !errors.Is(err, ErrNoSuchDomain) {
		t.Fatalf("nxdomain: %v", err)
	}
	txt, err := r.LookupTXT(context.Background(), "t.test")
	if err != nil || len(txt) != 2 || txt[0] != "v=spf1 -all" || txt[1] != "other" {
		t.Fatalf("txt %q %v", txt, err)
	}
	if txt, err := r.LookupTXT(context.Background(), "h.test"); err != nil || len(txt) != 0 {
		t.Fatalf("no txt: %q %v", txt, err)
	}
}

func TestResolverCacheTTL(t *testing.T) {
	d := startDNS(t)
	d.Add("c.test. 60 IN MX 10 mx.c.test.", "short.test. 0 IN MX 10 mx.c.test.")
	r := newTestResolver(t, d)
	reg := prometheus.NewRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	lookup := func(name string) {
		t.Helper()
		if _, err := r.LookupMX(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		advance time.Duration
		domain  string
		queries int
	}{
		{"first", 0, "c.test", 1},
		{"cached", 30 * time.Second, "c.test", 1},
		{"expired", 31 * time.Second, "c.test", 2},
		{"ttl0 a", 0, "short.test", 1},
		{"ttl0 b", 0, "short.test", 2},
	}
	for _, tc := range tests {
		now = now.Add(tc.advance)
		lookup(tc.domain)
		if q := d.Queries(tc.domain, "MX"); q != tc.queries {
			t.Fatalf("%s: %d queries, want %d", tc.name, q, tc.queries)
		}
	}
	// Negative answers are cached for the SOA minimum (60s in testnet).
	for range 3 {
		if _, err := r.LookupMX(ctx, "nx.test"); !errors.Is(err, ErrNoSuchDomain) {
			t.Fatal(err)
		}
	}
	if q := d.Queries("nx.test", "MX"); q != 1 {
		t.Fatalf("negative answer not cached: %d queries", q)
	}
	now = now.Add(61 * time.Second)
	r.LookupMX(ctx, "nx.test")
	if q := d.Queries("nx.test", "MX"); q != 2 {
		t.Fatalf("negative answer outlived its TTL: %d queries", q)
	}
	// SERVFAIL is not cached.
	d.SetRcode("sf.test", mdns.RcodeServerFailure)
	r.LookupMX(ctx, "sf.test")
	r.LookupMX(ctx, "sf.test")
	if q := d.Queries("sf.test", "MX"); q != 2 {
		t.Fatalf("servfail cached: %d queries", q)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "petrel_dns_lookups_total" {
		t.Fatalf("metrics %v %v", mfs, err)
	}
}

func TestResolverCacheBounded(t *testing.T) {
	d := startDNS(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		d.Add(n + ".test. 300 IN MX 10 mx.test.")
	}
	r := newTestResolver(t, d)
	r.maxSize = 3
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		if _, err := r.LookupMX(context.Background(), n+".test"); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > 3 {
		t.Fatalf("cache holds %d entries, max 3", n)
	}
}

func TestResolverTCPFallback(t *testing.T) {
	d := startDNS(t)
	// Enough TXT data to exceed a 1232-byte UDP answer.
	for i := range 20 {
		d.Add(`big.test. 300 IN TXT "` + string(rune('a'+i)) + `0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"`)
	}
	r := newTestResolver(t, d)
	txt, err := r.LookupTXT(context.Background(), "big.test")
	if err != nil || len(txt) != 20 {
		t.Fatalf("got %d records, err %v", len(txt), err)
	}
	if q := d.Queries("big.test", "TXT"); q != 2 {
		t.Fatalf("%d queries, want UDP then TCP", q)
	}
}

func TestLookupCNAME(t *testing.T) {
	d := startDNS(t)
	d.Add("track.shop.test. 300 IN CNAME Track.Petrel.TEST.", "plain.shop.test. 300 IN A 127.0.0.1")
	r := newTestResolver(t, d)
	tests := []struct {
		name, want string
		err        error
	}{
		{"track.shop.test", "track.petrel.test", nil},
		{"plain.shop.test", "", nil},
		{"missing.shop.test", "", ErrNoSuchDomain},
	}
	for _, tc := range tests {
		got, err := r.LookupCNAME(context.Background(), tc.name)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("LookupCNAME(%s) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}
