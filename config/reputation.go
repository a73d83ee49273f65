package config

import (
	"fmt"
	"net/netip"
	"time"
)

// ReputationConfig is the [reputation] section: blocklist monitoring
// (package reputation) of the egress IPs ([[shaping.pool]] sources' bind
// addresses), the sending domains, the bounce domain, the public
// (tracking/unsubscribe) host and ExtraIPs/ExtraDomains.
type ReputationConfig struct {
	// Enabled turns the scheduled checks on (default off: the public
	// blocklist mirrors have usage terms, see README).
	Enabled bool `toml:"enabled"`
	// Interval between scheduled checks (default 1h); petrelctl
	// reputation check runs one at once.
	Interval Duration `toml:"interval"`
	// Timeout bounds each DNS query (default 5s).
	Timeout Duration `toml:"timeout"`
	// PauseOnListing pauses the streams whose egress pool has a listed IP
	// until it is delisted (default off: alarm only).
	PauseOnListing bool `toml:"pause_on_listing"`
	// ExtraIPs and ExtraDomains are checked too (IPs behind NAT, custom
	// tracking domains).
	ExtraIPs     []string `toml:"extra_ips"`
	ExtraDomains []string `toml:"extra_domains"`
	// Lists are [[reputation.list]] entries; none means the documented
	// defaults (Spamhaus ZEN, Spamhaus DBL, SURBL multi).
	Lists []BlocklistConfig `toml:"list"`
}

// BlocklistConfig is one DNS blocklist.
type BlocklistConfig struct {
	Name string `toml:"name"`
	// Zone is queried: <reversed IP>.<zone> or <domain>.<zone>.
	Zone string `toml:"zone"`
	// Kind is "ip" or "domain".
	Kind string `toml:"kind"`
	// Codes maps return addresses to their meaning ("127.0.0.2" = "SBL").
	Codes map[string]string `toml:"codes"`
	// Refused are return addresses or prefixes meaning the list refused
	// the query ("127.255.255.0/24"): never a listing.
	Refused []string `toml:"refused"`
}

func defaultReputation() ReputationConfig {
	return ReputationConfig{Interval: Duration{time.Hour}, Timeout: Duration{5 * time.Second}}
}

func (r *ReputationConfig) validate() error {
	if r.Interval.Duration < time.Minute || r.Timeout.Duration <= 0 {
		return fmt.Errorf("reputation: interval must be at least 1m and timeout positive")
	}
	for _, ip := range r.ExtraIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("reputation: extra_ips: %q is not an IP address", ip)
		}
	}
	for _, l := range r.Lists {
		if l.Name == "" || l.Zone == "" || (l.Kind != "ip" && l.Kind != "domain") {
			return fmt.Errorf("reputation: list %q: needs name, zone and kind \"ip\" or \"domain\"", l.Name)
		}
		for _, p := range l.Refused {
			if _, err := ParseAddrOrPrefix(p); err != nil {
				return fmt.Errorf("reputation: list %s: refused %q: %w", l.Name, p, err)
			}
		}
	}
	return nil
}

// ParseAddrOrPrefix parses "127.255.255.254" or "127.255.255.0/24".
func ParseAddrOrPrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address or prefix")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
