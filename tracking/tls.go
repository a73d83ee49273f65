package tracking

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// CertManager obtains and renews the certificates of tracking domains
// over ACME (golang.org/x/crypto/acme/autocert, tls-alpn-01 on the TLS
// listener), only for verified domains with HTTPS on (Domains.TLSAllowed
// is the host policy: any other SNI name fails the handshake before any
// ACME traffic). Certificates are cached in a directory, so a restart
// does not ask again.
type CertManager struct {
	m     *autocert.Manager
	cache autocert.DirCache
}

// CertOptions configure NewCertManager.
type CertOptions struct {
	// CacheDir keeps account key and certificates (0700).
	CacheDir string
	// DirectoryURL is the ACME directory ("" Let's Encrypt production).
	DirectoryURL string
	// HTTPClient talks to the ACME server (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Email is the ACME account contact.
	Email string
}

// NewCertManager returns the certificate manager of d's domains.
func NewCertManager(d *Domains, o CertOptions) *CertManager {
	c := &CertManager{cache: autocert.DirCache(o.CacheDir)}
	c.m = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      c.cache,
		Email:      o.Email,
		HostPolicy: func(ctx context.Context, host string) error { return d.TLSAllowed(ctx, host) },
		Client:     &acme.Client{DirectoryURL: o.DirectoryURL, HTTPClient: o.HTTPClient},
	}
	d.Cert = c.Info
	return c
}

// TLSConfig is the tracking listener's TLS config: certificates by SNI,
// and the ACME tls-alpn-01 protocol.
func (c *CertManager) TLSConfig() *tls.Config {
	cfg := c.m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// Info reads host's cached certificate: none, valid, expiring (within
// 14 days: autocert renews 30 days ahead, so this means renewal keeps
// failing) or expired.
func (c *CertManager) Info(host string) *CertInfo {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := c.cache.Get(ctx, host)
	if err != nil {
		return &CertInfo{Status: "none"}
	}
	for len(b) > 0 {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			break
		}
		st := "valid"
		switch left := time.Until(cert.NotAfter); {
		case left <= 0:
			st = "expired"
		case left < 14*24*time.Hour:
			st = "expiring"
		}
		return &CertInfo{Status: st, Issuer: cert.Issuer.CommonName, NotAfter: cert.NotAfter.UTC()}
	}
	return &CertInfo{Status: "none"}
}
