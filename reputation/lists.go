package reputation

import (
	"fmt"
	"net/netip"
	"strings"
)

// Kind is what a blocklist lists: IP addresses (queried as the reversed
// address under the zone) or domain names (queried as the name under the
// zone).
type Kind string

const (
	KindIP     Kind = "ip"
	KindDomain Kind = "domain"
)

// List is one DNS blocklist and how to read its answers.
type List struct {
	// Name labels the list in results, metrics and events.
	Name string
	// Zone is the DNS zone queried (for a commercial feed, the zone with
	// your key, such as "<key>.zen.dq.spamhaus.net").
	Zone string
	Kind Kind
	// Codes gives the meaning of each return address; an address in
	// 127.0.0.0/8 without an entry still counts as a listing ("listed").
	Codes map[string]string
	// Refused are return addresses (or prefixes) that mean the list
	// refused to answer the query (rate limit, public resolver, bad
	// query): they are never a listing, and the result is marked Refused.
	Refused []netip.Prefix
}

// spamhausRefused are Spamhaus' error returns (127.255.255.252 typo in
// the zone name, .254 query through a public/open resolver, .255 too many
// queries): the whole 127.255.255.0/24 is read as "refused".
var spamhausRefused = []netip.Prefix{netip.MustParsePrefix("127.255.255.0/24")}

// DefaultLists are the lists checked when the configuration names none:
// Spamhaus ZEN (IPs), Spamhaus DBL and SURBL multi (domains), with the
// return codes their operators document. Their usage terms: Spamhaus'
// public mirrors are free only for low-volume, non-commercial use and
// refuse queries through public resolvers (127.255.255.254); a sender
// (commercial use) needs a Data Query Service key, configured as the
// zone. SURBL's public zone has similar terms and answers 127.0.0.1 when
// it blocks a resolver.
func DefaultLists() []List {
	return []List{
		{Name: "spamhaus-zen", Zone: "zen.spamhaus.org", Kind: KindIP, Refused: spamhausRefused, Codes: map[string]string{
			"127.0.0.2": "SBL: Spamhaus SBL data", "127.0.0.3": "SBL CSS: snowshoe spam",
			"127.0.0.4": "XBL: exploited/infected host", "127.0.0.5": "XBL: exploited/infected host",
			"127.0.0.6": "XBL: exploited/infected host", "127.0.0.7": "XBL: exploited/infected host",
			"127.0.0.9":  "SBL DROP: hijacked netblock",
			"127.0.0.10": "PBL: ISP policy (end-user range)", "127.0.0.11": "PBL: Spamhaus policy (end-user range)",
		}},
		{Name: "spamhaus-dbl", Zone: "dbl.spamhaus.org", Kind: KindDomain,
			Refused: append([]netip.Prefix{netip.MustParsePrefix("127.0.1.255/32")}, spamhausRefused...), Codes: map[string]string{
				"127.0.1.2": "spam domain", "127.0.1.4": "phishing domain", "127.0.1.5": "malware domain",
				"127.0.1.6": "botnet C&C domain", "127.0.1.102": "abused legit spam", "127.0.1.103": "abused spammed redirector",
				"127.0.1.104": "abused legit phish", "127.0.1.105": "abused legit malware", "127.0.1.106": "abused legit botnet C&C",
			}},
		{Name: "surbl-multi", Zone: "multi.surbl.org", Kind: KindDomain,
			Refused: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Codes: map[string]string{
				"127.0.0.8": "PH: phishing", "127.0.0.16": "MW: malware", "127.0.0.64": "ABUSE: spam",
				"127.0.0.128": "CR: cracked site", "127.0.0.24": "PH+MW", "127.0.0.72": "PH+ABUSE",
				"127.0.0.80": "MW+ABUSE", "127.0.0.88": "PH+MW+ABUSE",
			}},
	}
}

// query is the DNS name to look up for target in l, or an error when the
// target is not of the list's kind.
func (l List) query(target string) (string, error) {
	zone := strings.Trim(l.Zone, ".")
	switch l.Kind {
	case KindIP:
		ip, err := netip.ParseAddr(target)
		if err != nil {
			return "", fmt.Errorf("reputation: %q is not an IP address", target)
		}
		return reverse(ip.Unmap()) + "." + zone, nil
	case KindDomain:
		d := strings.Trim(strings.ToLower(target), ".")
		if d == "" || strings.ContainsAny(d, " /@") {
			return "", fmt.Errorf("reputation: %q is not a domain", target)
		}
		return d + "." + zone, nil
	}
	return "", fmt.Errorf("reputation: list %s: unknown kind %q", l.Name, l.Kind)
}

// reverse is the DNSBL form of ip: IPv4 octets reversed ("2.2.0.192" for
// 192.0.2.2), IPv6 nibbles reversed (RFC 5782 section 2.4).
func reverse(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var sb strings.Builder
	const hex = "0123456789abcdef"
	for i := len(b) - 1; i >= 0; i-- {
		sb.WriteByte(hex[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hex[b[i]>>4])
		if i > 0 {
			sb.WriteByte('.')
		}
	}
	return sb.String()
}

// read interprets the answer addresses of one query: the listing codes
// with their meanings, or refused when an answer is one of the list's
// refusal codes. Answers outside 127.0.0.0/8 (a resolver that rewrites
// NXDOMAIN) are neither.
func (l List) read(answers []netip.Addr) (codes, meanings []string, refused bool, odd []string) {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for _, a := range answers {
		if slicesContainsPrefix(l.Refused, a) {
			refused = true
			continue
		}
		if !loopback.Contains(a) {
			odd = append(odd, a.String())
			continue
		}
		m := l.Codes[a.String()]
		if m == "" {
			m = "listed"
		}
		codes = append(codes, a.String())
		meanings = append(meanings, m)
	}
	return codes, meanings, refused, odd
}

func slicesContainsPrefix(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
