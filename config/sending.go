package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// SendingConfig is the [sending] section owned by policy's sender-side
// features: suppression, DKIM keys, sending-domain checks and
// List-Unsubscribe.
type SendingConfig struct {
	// DKIM lists signing keys configured by path. Keys generated with
	// `petrelctl dkim keygen` under <data_dir>/dkim/<domain>/<selector>.key
	// are found without being listed here.
	DKIM []DKIMKey `toml:"dkim"`
	// DKIMDefaultDomain signs mail whose From domain (and every parent
	// domain) has no key. Empty means such mail goes out unsigned.
	DKIMDefaultDomain string `toml:"dkim_default_domain"`

	// SPFIPs are the egress addresses published as ip4:/ip6: in the SPF
	// record `petrelctl domain add` prints and `domain check` expects.
	SPFIPs []string `toml:"spf_ips"`
	// SPFInclude is an optional include: domain in that SPF record.
	SPFInclude string `toml:"spf_include"`
	// DMARCReport is the rua address in the suggested DMARC record;
	// empty means dmarc@<domain>.
	DMARCReport string `toml:"dmarc_report"`
	// DomainCheckInterval is how often registered sending domains are
	// re-checked in DNS (the per-message check reads a cache).
	DomainCheckInterval Duration `toml:"domain_check_interval"`

	// UnsubscribeURL is the public HTTPS base URL of the one-click
	// unsubscribe endpoint; List-Unsubscribe carries
	// <UnsubscribeURL>/unsubscribe/<token>. Empty means the mailto form only.
	UnsubscribeURL string `toml:"unsubscribe_url"`
	// UnsubscribeDomain is the domain of the mailto form
	// (unsubscribe+<token>@domain). Empty means [bounce] domain.
	UnsubscribeDomain string `toml:"unsubscribe_domain"`
	// UnsubscribeSecret keys the HMAC of unsubscribe tokens. Empty means a
	// random secret generated once and kept in <data_dir>/unsubscribe.key.
	UnsubscribeSecret string `toml:"unsubscribe_secret"`
	// ListUnsubscribeStreams are the streams whose mail gets
	// List-Unsubscribe headers.
	ListUnsubscribeStreams []string `toml:"list_unsubscribe_streams"`
}

// DKIMKey is one [[sending.dkim]] signing key.
type DKIMKey struct {
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	// KeyFile is a PEM private key (PKCS#8 or PKCS#1).
	KeyFile string `toml:"key_file"`
	// Algorithm is "rsa" or "ed25519"; it must match the key.
	Algorithm string `toml:"algorithm"`
}

func defaultSending() SendingConfig {
	return SendingConfig{
		DomainCheckInterval:    Duration{time.Hour},
		ListUnsubscribeStreams: []string{"marketing"},
	}
}

func (s *SendingConfig) validate() error {
	for i, k := range s.DKIM {
		if k.Domain == "" || k.Selector == "" || k.KeyFile == "" {
			return fmt.Errorf("dkim[%d]: domain, selector and key_file are required", i)
		}
		switch k.Algorithm {
		case "", "rsa", "ed25519":
		default:
			return fmt.Errorf("dkim[%d]: algorithm %q is not rsa or ed25519", i, k.Algorithm)
		}
	}
	for _, ip := range s.SPFIPs {
		if net.ParseIP(ip) == nil {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return fmt.Errorf("spf_ips: %q is not an IP address or CIDR", ip)
			}
		}
	}
	if s.DomainCheckInterval.Duration <= 0 {
		s.DomainCheckInterval.Duration = time.Hour
	}
	if s.UnsubscribeURL != "" {
		u, err := url.Parse(s.UnsubscribeURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("unsubscribe_url %q must be an absolute http(s) URL", s.UnsubscribeURL)
		}
		s.UnsubscribeURL = strings.TrimRight(s.UnsubscribeURL, "/")
	}
	return nil
}
