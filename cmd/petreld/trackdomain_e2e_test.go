package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingDomainHTTPSThroughDaemon: a [[tracking.domain]] with HTTPS
// on a real petreld becomes verified by its CNAME (checked at start
// through the loopback DNS server), gets a certificate from a local
// Pebble ACME CA on the first TLS handshake of [tracking] https_listen
// (or the certificate check's request, whichever comes first),
// which then serves the pixel for that SNI name (certificate verified
// against Pebble's root); the API shows the certificate valid; an
// unknown SNI name fails the handshake; after a restart the domain is
// served again (its certificate is cached in data_dir/acme).
func TestTrackingDomainHTTPSThroughDaemon(t *testing.T) {
	e, tlsAddr, _, peb := startTrackingHTTPS(t, "")
	var dom tracking.Domain
	waitFor(t, 15*time.Second, "track.shop.test verified", func() bool {
		code, err := e.api("GET", "/api/v1/tracking/domains/track.shop.test", nil, &dom)
		return err == nil && code == 200 && dom.Status == tracking.DomainVerified
	})
	// The certificate check may have asked Pebble for it already.
	if dom.Certificate == nil || dom.Certificate.Status != "none" && dom.Certificate.Status != "valid" {
		t.Fatalf("certificate before the first handshake: %+v", dom.Certificate)
	}
	roots, err := peb.Roots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "track.shop.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		},
	}}
	open, _ := daemonSigner(t, e).Encode(tracking.Token{Kind: tracking.Open, Campaign: "spring", Message: "m", Recipient: "r", Sent: 1})
	pixel := func() {
		t.Helper()
		resp, err := client.Get("https://track.shop.test/t/o/" + open + ".gif")
		if err != nil {
			t.Fatalf("HTTPS pixel: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 43 || !strings.Contains(resp.TLS.PeerCertificates[0].Issuer.CommonName, "Pebble") {
			t.Fatalf("HTTPS pixel: %d %d bytes", resp.StatusCode, len(b))
		}
	}
	pixel()
	if code, err := e.api("GET", "/api/v1/tracking/domains/track.shop.test", nil, &dom); err != nil || code != 200 ||
		dom.Certificate == nil || dom.Certificate.Status != "valid" {
		t.Fatalf("certificate after issuance: %d %v %+v", code, err, dom.Certificate)
	}
	// The TLS listener serves the public routes only.
	req, _ := http.NewRequest("GET", "https://track.shop.test/api/v1/queue/stats", nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("private route on the tracking listener: %v %v", resp, err)
	}
	if c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "nobody.shop.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("handshake for an unknown host succeeded")
	}
	client.CloseIdleConnections()
	e.stop()
	e.start()
	waitFor(t, 10*time.Second, "the tracking TLS listener", func() bool {
		c, err := net.Dial("tcp", tlsAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	pixel()
}

// startTrackingHTTPS starts petreld with [tracking] https_listen on a
// free port, ACME from a local Pebble CA (through e's loopback DNS) and
// the verified HTTPS tracking domain track.shop.test (CNAME
// track.petrel.test), plus more [[tracking.domain]] TOML and DNS
// records (in place before the first CNAME check); it returns the
// running env, the TLS listener's address and port, and Pebble.
func startTrackingHTTPS(t *testing.T, moreDomains string, moreDNS ...string) (*env, string, string, *testnet.Pebble) {
	t.Helper()
	testnet.SkipIfShort(t, "builds and runs the Pebble ACME CA")
	e := newEnv(t)
	tlsAddr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(tlsAddr)
	var port int
	fmt.Sscan(portStr, &port)
	e.dns.Add("track.shop.test. 60 IN CNAME track.petrel.test.", "track.shop.test. 60 IN A 127.0.0.1")
	e.dns.Add(moreDNS...)
	peb := testnet.StartPebble(t, e.dns.Addr, port, 1)
	e.extra = fmt.Sprintf(`[tracking]
https_listen = %q
acme_directory = %q
acme_ca = %q
cname_target = "track.petrel.test"
[[tracking.domain]]
host = "track.shop.test"
sending_domain = "shop.test"
https = true
%s`, tlsAddr, peb.DirectoryURL, peb.CAFile, moreDomains)
	e.start()
	return e, tlsAddr, portStr, peb
}
