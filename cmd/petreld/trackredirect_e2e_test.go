package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingHTTPRedirectsToHTTPS: on a real petreld with [tracking]
// https_listen and a verified HTTPS tracking domain (certificate from a
// local Pebble ACME CA), a plain-HTTP request on the [http] listener
// with that Host is redirected to the same host, path and query over
// https:// on the TLS listener's port (301 for GET and HEAD, 308 for a
// POST), and following it serves the pixel over TLS; the ACME HTTP-01
// challenge path is answered as before (not redirected); a tracking
// domain without HTTPS, an HTTPS domain whose CNAME is not verified (we
// have no certificate for it), a foreign Host and the bare address keep
// being served over HTTP as before (no open redirect).
func TestTrackingHTTPRedirectsToHTTPS(t *testing.T) {
	e, tlsAddr, portStr, peb := startTrackingHTTPS(t, `[[tracking.domain]]
host = "plain.other.test"
sending_domain = "other.test"
https = false
[[tracking.domain]]
host = "nocname.third.test"
sending_domain = "third.test"
https = true
`, "plain.other.test. 60 IN CNAME track.petrel.test.")
	for _, h := range []string{"track.shop.test", "plain.other.test"} {
		waitFor(t, 15*time.Second, h+" verified", func() bool {
			var dom tracking.Domain
			code, err := e.api("GET", "/api/v1/tracking/domains/"+h, nil, &dom)
			return err == nil && code == 200 && dom.Status == tracking.DomainVerified
		})
	}
	waitFor(t, 15*time.Second, "nocname.third.test failed", func() bool {
		var dom tracking.Domain
		code, err := e.api("GET", "/api/v1/tracking/domains/nocname.third.test", nil, &dom)
		return err == nil && code == 200 && dom.Status == tracking.DomainFailed
	})
	open, _ := daemonSigner(t, e).Encode(tracking.Token{Kind: tracking.Open, Campaign: "spring", Message: "m", Recipient: "r", Sent: 1})
	pixelPath := "/t/o/" + open + ".gif"

	// plain sends one request to the HTTP listener with that Host and
	// does not follow redirects.
	plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, host, pathQuery string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+e.http+pathQuery, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatalf("%s http://%s%s: %v", method, host, pathQuery, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	httpsBase := "https://track.shop.test:" + portStr
	query := "?utm_source=mail&x=a%20b&y=%2F"
	for _, c := range []struct {
		method, host, path string
		code               int
		location           string
	}{
		{"GET", "track.shop.test", pixelPath + query, http.StatusMovedPermanently, httpsBase + pixelPath + query},
		{"HEAD", "track.shop.test", pixelPath, http.StatusMovedPermanently, httpsBase + pixelPath},
		{"GET", "Track.Shop.Test.:80", "/t/c/anything%2Fescaped/x?q=1", http.StatusMovedPermanently, httpsBase + "/t/c/anything%2Fescaped/x?q=1"},
		{"POST", "track.shop.test", "/unsubscribe/tok?List-Unsubscribe=One-Click", http.StatusPermanentRedirect, httpsBase + "/unsubscribe/tok?List-Unsubscribe=One-Click"},
	} {
		resp, _ := do(c.method, c.host, c.path)
		if resp.StatusCode != c.code || resp.Header.Get("Location") != c.location {
			t.Errorf("%s %s%s: %d Location %q, want %d %q", c.method, c.host, c.path, resp.StatusCode, resp.Header.Get("Location"), c.code, c.location)
		}
	}
	// Following the redirect lands on the TLS listener (Pebble's cert).
	roots, err := peb.Roots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	follow := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasPrefix(addr, "track.shop.test:") && addr != "track.shop.test:"+portStr {
				addr = e.http // the plain request: track.shop.test:80 is our HTTP listener
			} else {
				addr = tlsAddr
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := follow.Get("http://track.shop.test" + pixelPath + query)
	if err != nil {
		t.Fatalf("following the redirect: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 43 || resp.TLS == nil || !strings.Contains(resp.TLS.PeerCertificates[0].Issuer.CommonName, "Pebble") {
		t.Fatalf("after the redirect: %d, %d bytes, TLS %v", resp.StatusCode, len(b), resp.TLS != nil)
	}

	// Served over HTTP as before: the same answers as for the bare
	// address (pixel 200 with the GIF; the challenge path whatever the
	// router says for it), with no Location.
	asBefore := func(host, path string) {
		t.Helper()
		want, wantBody := do("GET", e.http, path)
		got, gotBody := do("GET", host, path)
		if got.StatusCode != want.StatusCode || string(gotBody) != string(wantBody) || got.Header.Get("Location") != "" {
			t.Errorf("GET %s%s: %d Location %q, want %d as for the bare address", host, path, got.StatusCode, got.Header.Get("Location"), want.StatusCode)
		}
	}
	for _, host := range []string{"plain.other.test", "nocname.third.test", "evil.example", "track.shop.test.evil.example", "127.0.0.1"} {
		asBefore(host, pixelPath+query)
	}
	if resp, b := do("GET", "plain.other.test", pixelPath); resp.StatusCode != 200 || len(b) != 43 {
		t.Errorf("pixel on a tracking domain without HTTPS: %d, %d bytes", resp.StatusCode, len(b))
	}
	asBefore("track.shop.test", tracking.ACMEChallengePath+"some-token")
}
