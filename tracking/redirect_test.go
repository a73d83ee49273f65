package tracking

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRedirectHTTPFollowsDomains: on both backends, over a real loopback
// HTTP server wrapped in RedirectHTTP, a verified HTTPS tracking domain
// is redirected at once after this registry verified it, a foreign Host
// and a tracking domain without HTTPS are served by the next handler; a
// change made through another registry on the same database (another
// petreld on a shared PostgreSQL) is seen within httpsMaxAge; a removed
// domain, or one whose CNAME turned failed, is no longer redirected.
func TestRedirectHTTPFollowsDomains(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			d, dnsSrv := newDomains(t, backend)
			dnsSrv.Add("a.shop.test. 0 IN CNAME track.petrel.test.", "b.shop.test. 60 IN CNAME track.petrel.test.",
				"plain.shop.test. 60 IN CNAME track.petrel.test.")
			cm, err := NewCertManager(d, CertOptions{CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("next")) })
			srv := httptest.NewServer(cm.RedirectHTTP(next, "8443"))
			defer srv.Close()
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			get := func(host string) string {
				t.Helper()
				req, _ := http.NewRequest("GET", srv.URL+"/t/o/x.gif?a=1", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusMovedPermanently {
					return resp.Header.Get("Location")
				}
				return "next"
			}
			for _, h := range []string{"a.shop.test", "plain.shop.test"} {
				if _, err := d.Add(ctx, Domain{Host: h, SendingDomain: "shop.test", HTTPS: h != "plain.shop.test"}); err != nil {
					t.Fatal(err)
				}
			}
			if got := get("a.shop.test"); got != "next" {
				t.Fatalf("pending domain: %q", got)
			}
			for _, h := range []string{"a.shop.test", "plain.shop.test"} {
				if _, err := d.Check(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			if got := get("a.shop.test"); got != "https://a.shop.test:8443/t/o/x.gif?a=1" {
				t.Fatalf("verified HTTPS domain: %q", got)
			}
			for _, h := range []string{"plain.shop.test", "b.shop.test", "evil.test", ""} {
				if got := get(h); got != "next" {
					t.Fatalf("host %q: %q", h, got)
				}
			}
			// A request target that is not a path ("x:@evil.example/p",
			// "*") is never written after our host: it would name another.
			for _, target := range []string{"x:@evil.example/p?q=1", "*"} {
				req := httptest.NewRequest("GET", "http://a.shop.test/", nil)
				req.URL.Path, req.URL.Opaque, req.RequestURI = "", target, target
				if target == "*" {
					req.Method, req.URL.Opaque, req.URL.Path = "OPTIONS", "", "*"
				}
				rec := httptest.NewRecorder()
				cm.RedirectHTTP(next, "8443").ServeHTTP(rec, req)
				if loc := rec.Header().Get("Location"); loc != "" || rec.Body.String() != "next" {
					t.Fatalf("target %q: Location %q, body %q", target, loc, rec.Body.String())
				}
			}
			// Another instance adds and verifies b.shop.test.
			other, err := NewDomains(ctx, d.db, d.pg, d.resolver, "track.petrel.test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Add(ctx, Domain{Host: "b.shop.test", SendingDomain: "shop.test", HTTPS: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Check(ctx, "b.shop.test"); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2*httpsMaxAge + 2*time.Second)
			for get("b.shop.test") != "https://b.shop.test:8443/t/o/x.gif?a=1" {
				if time.Now().After(deadline) {
					t.Fatal("another instance's domain not redirected in time")
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err := d.Remove(ctx, "b.shop.test"); err != nil {
				t.Fatal(err)
			}
			if got := get("b.shop.test"); got != "next" {
				t.Fatalf("removed domain: %q", got)
			}
			dnsSrv.Remove("a.shop.test.") // TTL 0: not cached
			if dom, err := d.Check(ctx, "a.shop.test"); err != nil || dom.Status != DomainFailed {
				t.Fatalf("check without CNAME: %+v %v", dom, err)
			}
			if got := get("a.shop.test"); got != "next" {
				t.Fatalf("domain whose CNAME failed: %q", got)
			}
		})
	}
}
