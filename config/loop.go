package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ownListeners returns Petrel's own SMTP listeners by config key: mail
// relayed to one of them comes straight back (a routing loop).
func (c *Config) ownListeners() [][2]string {
	var out [][2]string
	if c.SMTP.Listen != "" {
		out = append(out, [2]string{"smtp.listen", c.SMTP.Listen})
	}
	if c.Bounce.Listen != "" {
		out = append(out, [2]string{"bounce.listen", c.Bounce.Listen})
	}
	return out
}

// checkTransportLoops refuses a [[transport]] relay that is one of
// Petrel's own SMTP listeners.
func (c *Config) checkTransportLoops() error {
	for i, t := range c.Transport {
		for _, l := range c.ownListeners() {
			if sameEndpoint(t.Relay, l[1], c.Hostname) {
				return fmt.Errorf("transport[%d]: relay %q is Petrel's own listener %s = %q: mail for %q would loop back into Petrel",
					i, t.Relay, l[0], l[1], t.Domain)
			}
		}
	}
	return nil
}

// sameEndpoint reports whether connecting to relay ("host:port") reaches
// a socket listening on listen ("host:port"), without DNS: IP literals
// are compared (IPv4-mapped IPv6 unmapped), "localhost" and Petrel's own
// hostname stand for this machine, a wildcard listener ("", 0.0.0.0, ::)
// receives connections to any loopback address or to this machine's
// name, and connecting to a wildcard address reaches a loopback listener.
func sameEndpoint(relay, listen, hostname string) bool {
	rh, rp, err1 := net.SplitHostPort(relay)
	lh, lp, err2 := net.SplitHostPort(listen)
	if err1 != nil || err2 != nil || rp != lp {
		return false
	}
	type kind int
	const (
		other kind = iota
		wildcard
		loopback
		thisHost // a name for this machine: not resolved, so not known to be loopback
	)
	classify := func(h string) (kind, netip.Addr) {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h == "" {
			return wildcard, netip.Addr{}
		}
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			a = a.Unmap().WithZone("")
			switch {
			case a.IsUnspecified():
				return wildcard, a
			case a.IsLoopback():
				return loopback, a
			}
			return other, a
		}
		if h == "localhost" || strings.HasSuffix(h, ".localhost") {
			return loopback, netip.Addr{}
		}
		if hostname != "" && h == strings.ToLower(strings.TrimSuffix(hostname, ".")) {
			return thisHost, netip.Addr{}
		}
		return other, netip.Addr{}
	}
	// main: "localhost" (no literal) or the address it names.
	main := func(a netip.Addr) bool {
		return !a.IsValid() || a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback()
	}
	rk, ra := classify(rh)
	lk, la := classify(lh)
	switch {
	case lk == wildcard:
		// Listening everywhere: any local address reaches it.
		return rk != other
	case rk == wildcard:
		// Connecting to 0.0.0.0 or :: reaches the loopback interface.
		return lk == loopback && main(la)
	case rk == loopback && lk == loopback:
		if ra.IsValid() && la.IsValid() {
			return ra == la
		}
		return main(ra) && main(la)
	case rk == other && lk == other:
		return ra.IsValid() && ra == la || !ra.IsValid() && !la.IsValid() && strings.EqualFold(rh, lh)
	case rk == thisHost && lk == thisHost:
		return true
	}
	return false
}
