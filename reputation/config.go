package reputation

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/petrel-mta/petrel/config"
)

// ListsFromConfig returns the configured lists, or DefaultLists when none
// is configured (config validation has checked them).
func ListsFromConfig(cfg []config.BlocklistConfig) []List {
	if len(cfg) == 0 {
		return DefaultLists()
	}
	out := make([]List, 0, len(cfg))
	for _, c := range cfg {
		l := List{Name: c.Name, Zone: c.Zone, Kind: Kind(c.Kind), Codes: c.Codes}
		for _, r := range c.Refused {
			if p, err := config.ParseAddrOrPrefix(r); err == nil {
				l.Refused = append(l.Refused, p)
			}
		}
		out = append(out, l)
	}
	return out
}

// TargetsFromConfig lists what cfg sends from: every [[shaping.pool]]
// source's bind address (with the streams that use the pool) and
// reputation.extra_ips, and the given sending domains, the bounce domain,
// the public host of sending.unsubscribe_url (tracking and unsubscribe
// links) and reputation.extra_domains.
func TargetsFromConfig(cfg *config.Config, sendingDomains []string) []Target {
	// Streams not named in [shaping.streams] send from the pool "default",
	// else from the first pool (shaping.Shaper.Egresses).
	fallback := ""
	for i, p := range cfg.Shaping.Pools {
		if i == 0 || p.Name == "default" {
			fallback = p.Name
		}
	}
	poolStreams := map[string][]string{}
	for _, s := range []string{"transactional", "marketing"} {
		if _, ok := cfg.Shaping.Streams[s]; !ok {
			poolStreams[fallback] = append(poolStreams[fallback], s)
		}
	}
	for stream, pool := range cfg.Shaping.Streams {
		poolStreams[pool] = append(poolStreams[pool], stream)
	}
	var out []Target
	ipAt := map[string]int{}
	addIP := func(ip string, streams []string) {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.IsUnspecified() {
			return
		}
		a = a.Unmap()
		if i, ok := ipAt[a.String()]; ok {
			out[i].Streams = append(out[i].Streams, streams...)
			return
		}
		ipAt[a.String()] = len(out)
		out = append(out, Target{Kind: KindIP, Value: a.String(), Streams: streams})
	}
	for _, p := range cfg.Shaping.Pools {
		for _, src := range p.Sources {
			addIP(src.BindAddress, slices.Clone(poolStreams[p.Name]))
		}
	}
	for _, ip := range cfg.Reputation.ExtraIPs {
		addIP(ip, nil)
	}
	domains := append(slices.Clone(sendingDomains), cfg.Bounce.Domain)
	if u, err := url.Parse(cfg.Sending.UnsubscribeURL); err == nil && u.Hostname() != "" {
		domains = append(domains, u.Hostname())
	}
	domains = append(domains, cfg.Reputation.ExtraDomains...)
	seen := map[string]bool{}
	for _, d := range domains {
		d = strings.Trim(strings.ToLower(d), ".")
		if _, err := netip.ParseAddr(d); d == "" || seen[d] || err == nil {
			continue
		}
		seen[d] = true
		out = append(out, Target{Kind: KindDomain, Value: d})
	}
	return out
}
