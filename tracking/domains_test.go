package tracking

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
)

// newDomains is a registry on a fresh ESP database of backend, resolving
// through a real loopback DNS server.
func newDomains(t *testing.T, backend string) (*Domains, *testnet.DNS) {
	t.Helper()
	srv, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	res, err := dns.NewResolver(srv.Addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := audience.Open(context.Background(), testnet.ESPDSN(t, backend), audience.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d, err := NewDomains(context.Background(), st.DB(), st.Postgres(), res, "track.petrel.test.")
	if err != nil {
		t.Fatal(err)
	}
	return d, srv
}

// TestTrackingDomainsCNAME: on both backends, a tracking domain is added
// pending, checked through the dns package against a real DNS server —
// missing name failed, CNAME elsewhere failed, right CNAME verified —
// and only a verified domain gives a base URL (https when on) and passes
// the TLS host policy; bad names are refused, remove works.
func TestTrackingDomainsCNAME(t *testing.T) {
	for _, backend := range testnet.ESPBackends {
		t.Run(backend, func(t *testing.T) {
			d, srv := newDomains(t, backend)
			ctx := context.Background()
			dom, err := d.Add(ctx, Domain{Host: "Track.Shop.TEST", SendingDomain: "shop.test", HTTPS: true})
			if err != nil || dom.Host != "track.shop.test" || dom.Status != DomainPending || dom.Target != "track.petrel.test" {
				t.Fatalf("add: %+v %v", dom, err)
			}
			if _, ok, _ := d.BaseURL(ctx, "shop.test"); ok {
				t.Fatal("pending domain used for links")
			}
			if dom, _ = d.Check(ctx, "track.shop.test"); dom.Status != DomainFailed || !strings.Contains(dom.Detail, "CNAME track.petrel.test") || dom.CheckedAt == nil {
				t.Fatalf("no record: %+v", dom)
			}
			srv.Add("wrong.shop.test. 60 IN CNAME elsewhere.example.")
			if _, err := d.Add(ctx, Domain{Host: "wrong.shop.test", SendingDomain: "shop.test"}); err != nil {
				t.Fatal(err)
			}
			if dom, _ = d.Check(ctx, "wrong.shop.test"); dom.Status != DomainFailed || !strings.Contains(dom.Detail, "elsewhere.example") {
				t.Fatalf("wrong CNAME: %+v", dom)
			}
			if err := d.TLSAllowed(ctx, "track.shop.test"); err == nil {
				t.Fatal("failed domain allowed a certificate")
			}
			d2, srv2 := newDomains(t, backend) // a fresh resolver cache
			srv2.Add("track.shop.test. 60 IN CNAME track.petrel.test.")
			if _, err := d2.Add(ctx, Domain{Host: "track.shop.test", SendingDomain: "shop.test", HTTPS: true}); err != nil {
				t.Fatal(err)
			}
			if dom, _ = d2.Check(ctx, "track.shop.test"); dom.Status != DomainVerified || dom.Detail != "" {
				t.Fatalf("right CNAME: %+v", dom)
			}
			if u, ok, err := d2.BaseURL(ctx, "SHOP.test"); err != nil || !ok || u != "https://track.shop.test" {
				t.Fatalf("base url %q %v %v", u, ok, err)
			}
			if err := d2.TLSAllowed(ctx, "track.shop.test"); err != nil {
				t.Fatalf("verified https domain refused: %v", err)
			}
			if err := d2.TLSAllowed(ctx, "other.shop.test"); !errors.Is(err, ErrUnknownDomain) {
				t.Fatalf("unknown host: %v", err)
			}
			for _, bad := range []Domain{{Host: "nodot", SendingDomain: "shop.test"}, {Host: "a..b", SendingDomain: "shop.test"}, {Host: "t.shop.test", SendingDomain: ""}} {
				if _, err := d.Add(ctx, bad); !errors.Is(err, ErrInvalidDomain) {
					t.Errorf("Add(%+v) = %v", bad, err)
				}
			}
			if l, err := d.List(ctx); err != nil || len(l) != 2 {
				t.Fatalf("list %v %+v", err, l)
			}
			if err := d.Remove(ctx, "track.shop.test"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Get(ctx, "track.shop.test"); !errors.Is(err, ErrUnknownDomain) {
				t.Fatalf("after remove: %v", err)
			}
		})
	}
}
