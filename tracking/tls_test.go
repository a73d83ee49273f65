package tracking

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
)

// TestTrackingDomainHTTPSFromPebble: a verified tracking domain with
// HTTPS gets its certificate from a real ACME CA (Let's Encrypt's Pebble
// on loopback, validating tls-alpn-01 against our TLS listener through
// the loopback DNS server), the listener serves the pixel for that SNI
// name with a certificate that verifies against Pebble's root, the API's
// certificate status says valid, and a handshake for a host we have no
// domain for fails.
func TestTrackingDomainHTTPSFromPebble(t *testing.T) {
	testnet.SkipIfShort(t, "builds and runs the Pebble ACME CA")
	d, srv := newDomains(t, "sqlite")
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv.Add("track.shop.test. 60 IN CNAME track.petrel.test.", "track.shop.test. 60 IN A 127.0.0.1")
	peb := testnet.StartPebble(t, srv.Addr, port, 1)
	if _, err := d.Add(ctx, Domain{Host: "track.shop.test", SendingDomain: "shop.test", HTTPS: true}); err != nil {
		t.Fatal(err)
	}
	if dom, err := d.Check(ctx, "track.shop.test"); err != nil || dom.Status != DomainVerified {
		t.Fatalf("check: %+v %v", dom, err)
	}
	if dom, _ := d.Get(ctx, "track.shop.test"); dom.Certificate != nil {
		t.Fatalf("certificate before a manager: %+v", dom.Certificate)
	}
	cm, err := NewCertManager(d, CertOptions{CacheDir: t.TempDir(), DirectoryURL: peb.DirectoryURL, HTTPClient: peb.Client, Email: "ops@shop.test"})
	if err != nil {
		t.Fatal(err)
	}
	if dom, _ := d.Get(ctx, "track.shop.test"); dom.Certificate == nil || dom.Certificate.Status != "none" {
		t.Fatalf("certificate before issuance: %+v", dom.Certificate)
	}
	s := newSigner(t, testSecret)
	hs := &http.Server{Handler: &Handler{Signer: s}, TLSConfig: cm.TLSConfig()}
	go hs.Serve(tls.NewListener(ln, hs.TLSConfig))
	defer hs.Close()

	roots, err := peb.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "track.shop.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
	}}
	open, _ := s.Encode(Token{Kind: Open, Campaign: "c", Message: "m", Recipient: "r", Sent: 1})
	resp, err := client.Get("https://track.shop.test/t/o/" + open + ".gif")
	if err != nil {
		t.Fatalf("HTTPS pixel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 43 || resp.TLS == nil || !strings.Contains(resp.TLS.PeerCertificates[0].Issuer.CommonName, "Pebble") ||
		resp.TLS.PeerCertificates[0].VerifyHostname("track.shop.test") != nil {
		t.Fatalf("HTTPS pixel: %d, %d bytes", resp.StatusCode, len(body))
	}
	dom, _ := d.Get(ctx, "track.shop.test")
	if dom.Certificate == nil || dom.Certificate.Status != "valid" || !strings.Contains(dom.Certificate.Issuer, "Pebble") || time.Until(dom.Certificate.NotAfter) < 24*time.Hour {
		t.Fatalf("certificate status: %+v", dom.Certificate)
	}
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{ServerName: "unknown.shop.test", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("handshake for a host without a tracking domain succeeded")
	}
}
