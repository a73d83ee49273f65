package reputation

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/queue"
)

// TestReverse: the DNSBL query names of IPv4 and IPv6 addresses and
// domains (RFC 5782 section 2).
func TestReverse(t *testing.T) {
	zen := List{Name: "zen", Zone: "zen.test.", Kind: KindIP}
	dbl := List{Name: "dbl", Zone: "dbl.test", Kind: KindDomain}
	tests := []struct {
		l       List
		target  string
		want    string
		wantErr bool
	}{
		{zen, "192.0.2.99", "99.2.0.192.zen.test", false},
		{zen, "::ffff:192.0.2.1", "1.2.0.192.zen.test", false},
		{zen, "2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test", false},
		{zen, "example.com", "", true},
		{dbl, "Mail.Example.COM.", "mail.example.com.dbl.test", false},
		{dbl, "a@b.example", "", true},
	}
	for _, tt := range tests {
		got, err := tt.l.query(tt.target)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s query(%q) = %q, %v; want %q (error %v)", tt.l.Name, tt.target, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestCheckAgainstTestDNS runs the checker with the default lists' code
// tables (zones moved to the test DNS server) against a real DNS server
// on loopback listing some IPs and domains: 127.0.0.x answers are
// listings with their documented meanings, the "query refused" codes
// (127.255.255.254, DBL 127.0.1.255, SURBL 127.0.0.1) and NXDOMAIN are
// not; a listing appends a "blocklisted" event to a real queue, sets the
// metrics and the alarm, and pauses the streams of the listed egress
// through a real shaper; delisting reverses all of it.
func TestCheckAgainstTestDNS(t *testing.T) {
	srv, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Add(
		"10.2.0.192.zen.test. 0 IN A 127.0.0.2",
		"10.2.0.192.zen.test. 0 IN A 127.0.0.10",
		"11.2.0.192.zen.test. 0 IN A 127.255.255.254", // public resolver: refused
		"bad.example.dbl.test. 0 IN A 127.0.1.2",
		"odd.example.dbl.test. 0 IN A 127.0.1.255", // DBL: IP queries prohibited
		"bad.example.surbl.test. 0 IN A 127.0.0.1", // SURBL: query blocked
		"links.example.surbl.test. 0 IN A 127.0.0.16",
	)
	res, err := dns.NewResolver(srv.Addr, 2*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lists := DefaultLists()
	for i, zone := range []string{"zen.test", "dbl.test", "surbl.test"} {
		lists[i].Zone = zone
	}
	q, err := queue.Open(filepath.Join(t.TempDir(), "q"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	sh, err := shaping.New(config.Default().Shaping, "mx.petrel.test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{
		{Kind: KindIP, Value: "192.0.2.10", Streams: []string{"marketing"}},
		{Kind: KindIP, Value: "192.0.2.11", Streams: []string{"transactional"}},
		{Kind: KindIP, Value: "192.0.2.12", Streams: []string{"transactional"}},
		{Kind: KindDomain, Value: "bad.example"},
		{Kind: KindDomain, Value: "odd.example"},
		{Kind: KindDomain, Value: "links.example"},
	}
	c, err := New(Options{Lists: lists, Resolver: res, Targets: func() []Target { return targets },
		PauseOnListing: true, Pauser: sh, Events: q, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	type want struct {
		listed, refused bool
		meanings        string
	}
	wants := map[string]want{
		"ip 192.0.2.10 spamhaus-zen":        {true, false, "SBL: Spamhaus SBL data|PBL: ISP policy (end-user range)"},
		"ip 192.0.2.11 spamhaus-zen":        {false, true, ""},
		"ip 192.0.2.12 spamhaus-zen":        {false, false, ""},
		"domain bad.example spamhaus-dbl":   {true, false, "spam domain"},
		"domain bad.example surbl-multi":    {false, true, ""},
		"domain odd.example spamhaus-dbl":   {false, true, ""},
		"domain odd.example surbl-multi":    {false, false, ""},
		"domain links.example spamhaus-dbl": {false, false, ""},
		"domain links.example surbl-multi":  {true, false, "MW: malware"},
	}
	got := c.Results()
	if len(got) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(wants), got)
	}
	for _, r := range got {
		k := key(r.Kind, r.Target, r.List)
		w, ok := wants[k]
		if !ok {
			t.Errorf("unexpected result %s", k)
			continue
		}
		if r.Listed != w.listed || r.Refused != w.refused || strings.Join(r.Meanings, "|") != w.meanings || r.Error != "" && !r.Refused {
			t.Errorf("%s: %+v, want %+v", k, r, w)
		}
	}
	if !got[0].Listed || !got[1].Listed || !got[2].Listed || got[3].Listed {
		t.Errorf("listed results are not first: %+v", got)
	}
	if v := value(t, c.alarm); v != 3 {
		t.Errorf("alarm gauge %v, want 3", v)
	}
	if v := value(t, c.listed.WithLabelValues("spamhaus-zen", "ip", "192.0.2.10")); v != 1 {
		t.Errorf("listed gauge %v", v)
	}
	if v := value(t, c.checks.WithLabelValues("spamhaus-zen", "refused")); v != 1 {
		t.Errorf("refused checks %v, want 1", v)
	}
	if _, ok := sh.StreamPaused("marketing"); !ok {
		t.Error("marketing (the listed egress' stream) not paused")
	}
	if _, ok := sh.StreamPaused("transactional"); ok {
		t.Error("transactional paused: a refused query is not a listing")
	}
	evs, err := q.Events(ctx, queue.EventFilter{Type: "blocklisted"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d blocklisted events, want 3: %+v", len(evs), evs)
	}
	// A second check of the same state adds no events.
	if _, err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if evs, _ := q.Events(ctx, queue.EventFilter{Type: "blocklisted"}); len(evs) != 3 {
		t.Fatalf("repeat check: %d blocklisted events, want 3", len(evs))
	}

	// Delisted: the events, the gauges and the pause follow.
	srv.Remove("10.2.0.192.zen.test")
	if _, err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := sh.StreamPaused("marketing"); ok {
		t.Error("marketing still paused after delisting")
	}
	if v := value(t, c.alarm); v != 2 {
		t.Errorf("alarm gauge %v after delisting, want 2", v)
	}
	evs, _ = q.Events(ctx, queue.EventFilter{Type: "delisted"})
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "192.0.2.10") {
		t.Fatalf("delisted events: %+v", evs)
	}
}

// TestRefusedKeepsState: a refused or failed query does not clear a
// listing seen before (the list did not answer).
func TestRefusedKeepsState(t *testing.T) {
	l := List{Name: "zen", Zone: "zen.test", Kind: KindIP, Refused: spamhausRefused}
	answers := map[string][]netip.Addr{"1.2.0.192.zen.test": {netip.MustParseAddr("127.0.0.4")}}
	r := resolverFunc(func(_ context.Context, name string) ([]netip.Addr, error) {
		if a, ok := answers[name]; ok {
			return a, nil
		}
		return nil, dns.ErrNoSuchDomain
	})
	c, err := New(Options{Lists: []List{l}, Resolver: r, Logger: slog.New(slog.DiscardHandler),
		Targets: func() []Target { return []Target{{Kind: KindIP, Value: "192.0.2.1"}} }})
	if err != nil {
		t.Fatal(err)
	}
	for i, answer := range []string{"127.0.0.4", "127.255.255.255", "127.0.0.4"} {
		answers["1.2.0.192.zen.test"] = []netip.Addr{netip.MustParseAddr(answer)}
		rs, err := c.Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !rs[0].Listed || rs[0].Refused != (i == 1) {
			t.Fatalf("check %d (%s): %+v", i, answer, rs[0])
		}
	}
}

type resolverFunc func(ctx context.Context, name string) ([]netip.Addr, error)

func (f resolverFunc) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return f(ctx, name)
}

// value reads a gauge's or counter's current value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// TestTargetsFromConfig: egress IPs carry the streams of their pool
// (unlisted streams use the pool "default"), domains are the sending,
// bounce, public and extra ones, once each.
func TestTargetsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Shaping.Pools = []config.EgressPool{
		{Name: "default", Sources: []config.EgressSource{{Name: "a", BindAddress: "192.0.2.1"}}},
		{Name: "bulk", Sources: []config.EgressSource{{Name: "b", BindAddress: "192.0.2.2"}, {Name: "c", BindAddress: "192.0.2.1"}}},
	}
	cfg.Shaping.Streams = map[string]string{"marketing": "bulk"}
	cfg.Bounce.Domain = "bounces.example.com"
	cfg.Sending.UnsubscribeURL = "https://links.example.com/x"
	cfg.Reputation.ExtraIPs = []string{"198.51.100.7"}
	cfg.Reputation.ExtraDomains = []string{"Example.com."}
	got := TargetsFromConfig(cfg, []string{"example.com", "mail.example.org"})
	var lines []string
	for _, tg := range got {
		lines = append(lines, fmt.Sprintf("%s %s %v", tg.Kind, tg.Value, tg.Streams))
	}
	want := []string{
		"ip 192.0.2.1 [transactional marketing]", "ip 192.0.2.2 [marketing]", "ip 198.51.100.7 []",
		"domain example.com []", "domain mail.example.org []", "domain bounces.example.com []", "domain links.example.com []",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("targets:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
