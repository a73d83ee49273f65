package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// writeCert writes a self-signed certificate for host valid from
// notBefore to notAfter, and its key, as PEM files in dir; it returns
// the certificate.
func writeCert(t *testing.T, dir, host string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, Issuer: pkix.Name{CommonName: "Operator Test CA"},
		DNSNames: []string{host}, NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first: the cert file's change is what makes petreld re-read both.
	if err := os.WriteFile(filepath.Join(dir, host+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, host+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestTrackingCertExpiryAlarm: a tracking domain served by the real TLS
// listener of a real petreld with the operator's certificate files
// (generated here, 3 days left) is reported expiring — the served
// certificate is that one, the API shows not_after and days_left, the
// gauge petrel_tracking_cert_expiry_seconds{domain} counts down to it, a
// cert_expiring event reaches the event log and a warning the log — and
// a domain whose files do not exist is cert_missing. Replacing the files
// with an expired certificate raises cert_expired (and the listener
// serves it: operator files are re-read at every check), with a 90-day
// one cert_ok and the alarm gauge back to 0.
func TestTrackingCertExpiryAlarm(t *testing.T) {
	e := newEnv(t)
	tlsAddr := freeAddr(t)
	certs := t.TempDir()
	now := time.Now()
	first := writeCert(t, certs, "track.shop.test", now.Add(-time.Hour), now.Add(72*time.Hour))
	e.extra = fmt.Sprintf(`[tracking]
https_listen = %q
cert_check_interval = "1s"
cert_expiry_warning = "336h"
[[tracking.domain]]
host = "track.shop.test"
sending_domain = "shop.test"
https = true
cert_file = %q
key_file = %q
[[tracking.domain]]
host = "track.gone.test"
sending_domain = "gone.test"
https = true
cert_file = %q
key_file = %q
`, tlsAddr, filepath.Join(certs, "track.shop.test.crt"), filepath.Join(certs, "track.shop.test.key"),
		filepath.Join(certs, "none.crt"), filepath.Join(certs, "none.key"))
	e.start()

	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "track.shop.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if got := served(); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("served certificate %v, want the operator's %v", got.SerialNumber, first.SerialNumber)
	}
	if c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "track.gone.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("handshake for a domain whose files are missing succeeded")
	}
	var dom tracking.Domain
	if code, err := e.api("GET", "/api/v1/tracking/domains/track.shop.test", nil, &dom); err != nil || code != 200 || dom.Certificate == nil ||
		dom.Certificate.Status != "expiring" || dom.Certificate.DaysLeft != 2 || dom.Certificate.Source != "file" ||
		!dom.Certificate.NotAfter.Equal(first.NotAfter) {
		t.Fatalf("domain: %d %v %+v", code, err, dom.Certificate)
	}
	type ev struct{ Type, Reason string }
	eventsOf := func(typ string) []ev {
		var page struct{ Events []ev }
		if code, err := e.api("GET", "/api/v1/events?type="+typ, nil, &page); err != nil || code != 200 {
			t.Fatalf("events: %d %v", code, err)
		}
		return page.Events
	}
	waitFor(t, 15*time.Second, "cert_expiring and cert_missing events", func() bool {
		return len(eventsOf("cert_expiring")) == 1 && len(eventsOf("cert_missing")) == 1
	})
	if r := eventsOf("cert_expiring")[0].Reason; !strings.HasPrefix(r, "track.shop.test: file certificate (expiring) expires") {
		t.Fatalf("cert_expiring reason %q", r)
	}
	if r := eventsOf("cert_missing")[0].Reason; !strings.HasPrefix(r, "track.gone.test: no certificate") {
		t.Fatalf("cert_missing reason %q", r)
	}
	metric := func(name, domain string) float64 {
		t.Helper()
		resp, err := http.Get("http://" + e.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(name + `\{domain="` + regexp.QuoteMeta(domain) + `"\} (\S+)`).FindSubmatch(b)
		if m == nil {
			return -1e18
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if v := metric("petrel_tracking_cert_expiry_seconds", "track.shop.test"); v > 72*3600 || v < 71*3600 {
		t.Fatalf("expiry gauge %v, want about 3 days", v)
	}
	if metric("petrel_tracking_cert_alarm", "track.gone.test") != 1 || metric("petrel_tracking_cert_alarm", "track.shop.test") != 1 {
		t.Fatal("alarm gauges not 1")
	}
	if !strings.Contains(e.logBuf.String(), `msg="tracking: certificate expiring" component=tracking domain=track.shop.test`) {
		t.Fatalf("no warning logged:\n%s", e.logBuf.String())
	}
	// An expired certificate replaces it.
	expired := writeCert(t, certs, "track.shop.test", now.Add(-10*24*time.Hour), now.Add(-time.Hour))
	waitFor(t, 15*time.Second, "cert_expired", func() bool { return len(eventsOf("cert_expired")) == 1 })
	if got := served(); got.SerialNumber.Cmp(expired.SerialNumber) != 0 {
		t.Fatal("the listener does not serve the re-read certificate")
	}
	if v := metric("petrel_tracking_cert_expiry_seconds", "track.shop.test"); v > -3500 || v < -3700 {
		t.Fatalf("expiry gauge %v for a certificate an hour past expiry", v)
	}
	// Renewed: cert_ok, valid, alarm off.
	writeCert(t, certs, "track.shop.test", now.Add(-time.Hour), now.Add(90*24*time.Hour))
	waitFor(t, 15*time.Second, "cert_ok", func() bool { return len(eventsOf("cert_ok")) == 1 })
	if code, err := e.api("GET", "/api/v1/tracking/domains/track.shop.test", nil, &dom); err != nil || code != 200 ||
		dom.Certificate.Status != "valid" || dom.Certificate.DaysLeft != 89 {
		t.Fatalf("renewed: %d %v %+v", code, err, dom.Certificate)
	}
	if metric("petrel_tracking_cert_alarm", "track.shop.test") != 0 {
		t.Fatal("alarm gauge still set after renewal")
	}
	if n := len(eventsOf("cert_expiring")); n != 1 {
		t.Fatalf("%d cert_expiring events, want 1 (raised once, on the change)", n)
	}
}
