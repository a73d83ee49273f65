package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// TrackingConfig is the [tracking] section: custom tracking domains and
// their HTTPS listener.
type TrackingConfig struct {
	// HTTPSListen is the "host:port" of the TLS listener serving the
	// public tracking routes (pixel, redirect, unsubscribe and preference
	// pages) for verified HTTPS tracking domains, by SNI, with ACME
	// certificates (tls-alpn-01: the CA connects to port 443 of the
	// domain, so this is :443 in production). "" starts none.
	HTTPSListen string `toml:"https_listen"`
	// ACMEDirectory is the ACME directory URL ("" Let's Encrypt
	// production).
	ACMEDirectory string `toml:"acme_directory"`
	// ACMEEmail is the ACME account's contact address.
	ACMEEmail string `toml:"acme_email"`
	// ACMECA is a PEM file of extra CAs trusted for the ACME directory's
	// own HTTPS (a private or test CA such as Pebble).
	ACMECA string `toml:"acme_ca"`
	// CNAMETarget is the host tracking domains must CNAME to; "" means
	// hostname.
	CNAMETarget string `toml:"cname_target"`
	// Domains are [[tracking.domain]] entries, added to the registry
	// (pending until their CNAME is checked) at start.
	Domains []TrackingDomain `toml:"domain"`
	// CertCheckInterval is how often the tracking domains' certificates
	// are checked for expiry (and cert_file entries re-read); 0 means 1h.
	CertCheckInterval Duration `toml:"cert_check_interval"`
	// CertExpiryWarning is the alarm window: a certificate with less
	// left is "expiring" (event cert_expiring, warning log); 0 means 14
	// days (ACME renews 30 days ahead, so this means renewal is failing).
	CertExpiryWarning Duration `toml:"cert_expiry_warning"`
}

// TrackingDomain is one [[tracking.domain]].
type TrackingDomain struct {
	// Host is the tracking host ("track.shop.example").
	Host string `toml:"host"`
	// SendingDomain is the From domain whose links use it.
	SendingDomain string `toml:"sending_domain"`
	// HTTPS serves it over TLS with an ACME certificate, or with
	// CertFile and KeyFile when they are set.
	HTTPS bool `toml:"https"`
	// CertFile and KeyFile are the operator's PEM certificate (chain)
	// and private key for Host: served instead of ACME, re-read at every
	// certificate check.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

func (t *TrackingConfig) validate() error {
	if t.HTTPSListen != "" {
		if _, _, err := net.SplitHostPort(t.HTTPSListen); err != nil {
			return fmt.Errorf("https_listen: %w", err)
		}
	}
	if t.CertCheckInterval.Duration < 0 || t.CertExpiryWarning.Duration < 0 {
		return errors.New("cert_check_interval and cert_expiry_warning must not be negative")
	}
	if t.ACMEDirectory != "" && !strings.HasPrefix(t.ACMEDirectory, "https://") {
		return errors.New("acme_directory: want an https:// URL")
	}
	for i, d := range t.Domains {
		if d.Host == "" || d.SendingDomain == "" {
			return fmt.Errorf("domain[%d]: host and sending_domain are required", i)
		}
		if (d.CertFile == "") != (d.KeyFile == "") {
			return fmt.Errorf("domain[%d]: cert_file and key_file go together", i)
		}
		if d.CertFile != "" && !d.HTTPS {
			return fmt.Errorf("domain[%d]: cert_file needs https = true", i)
		}
	}
	return nil
}
