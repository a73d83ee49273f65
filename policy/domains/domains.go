// Package domains owns sending-domain authentication: the DNS records a
// sending domain must publish (SPF, DKIM, an MX for its bounce domain,
// DMARC), checking them in DNS, the resulting status (unverified, usable,
// verified) and the persistent registry of sending domains with their
// last check results, which the per-message sender check reads instead of
// DNS.
package domains

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/policy/dkim"
)

// Status is a sending domain's authentication level.
type Status string

// Statuses, lowest first.
const (
	Unverified Status = "unverified"
	Usable     Status = "usable"
	Verified   Status = "verified"
)

// Rank orders statuses: unverified 0, usable 1, verified 2; "none" (the
// require_domain_status that accepts everything) and unknown strings 0.
func (s Status) Rank() int {
	switch s {
	case Usable:
		return 1
	case Verified:
		return 2
	}
	return 0
}

// State is the check result of one record.
type State string

// Record states.
const (
	OK      State = "ok"
	Missing State = "missing"
	Wrong   State = "wrong"
	// Error means the lookup failed temporarily; nothing is known.
	Error State = "error"
)

// Kinds of record.
const (
	KindSPF   = "SPF"
	KindDKIM  = "DKIM"
	KindMX    = "MX"
	KindDMARC = "DMARC"
)

// Record is one DNS record a sending domain should publish.
type Record struct {
	Kind string `json:"kind"`
	// Name is the owner name with a trailing dot.
	Name string `json:"name"`
	Type string `json:"type"`
	// Value is the record data: TXT text (unquoted) or "pref host.".
	Value string `json:"value"`
	// Zone is the zone-file line to publish.
	Zone string `json:"zone"`
	// Warning says why the suggested record may not work as printed
	// (e.g. an MX target that is not a fully qualified name); "" if none.
	Warning string `json:"warning,omitempty"`
}

// Check is a Record with what DNS said about it.
type Check struct {
	Record
	State State `json:"state"`
	// Found is what DNS holds at Name (TXT texts or MX hosts).
	Found  []string `json:"found,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

// Result is the outcome of checking one domain.
type Result struct {
	Domain  string    `json:"domain"`
	Status  Status    `json:"status"`
	Checks  []Check   `json:"checks"`
	Checked time.Time `json:"checked"`
}

// Problem describes the first record keeping the domain below want, e.g.
// "DKIM record s1._domainkey.example.com missing"; "" if none.
func (r Result) Problem(want Status) string {
	for _, c := range r.Checks {
		if c.State == OK || (c.Kind == KindDMARC && want != Verified) {
			continue
		}
		s := fmt.Sprintf("%s record %s %s", c.Kind, strings.TrimSuffix(c.Name, "."), c.State)
		if c.Detail != "" {
			s += " (" + c.Detail + ")"
		}
		return s
	}
	return ""
}

// Expect is what the checks compare DNS against (from [sending], [bounce]
// and hostname in the config).
type Expect struct {
	// SPFIPs are the egress addresses that must appear as ip4:/ip6:.
	SPFIPs []string
	// SPFInclude must appear as include: when set.
	SPFInclude string
	// DMARCReport is the rua mailbox; "" means dmarc@<domain>.
	DMARCReport string
	// BounceDomain is where the MX must be; "" means bounce.<domain>.
	BounceDomain string
	// MXHost is the host the bounce MX must point to (Petrel's hostname).
	// With no SPFIPs and no SPFInclude the SPF record authorises it as
	// a:MXHost (the address this host sends from).
	MXHost string
}

// spfTerms are the mechanisms the SPF record must carry: ip4:/ip6: per
// egress address, include: when set, and a:<hostname> when neither names
// an address (a bare "v=spf1 ~all" would authorise nobody).
func (ex Expect) spfTerms() []string {
	var terms []string
	for _, ip := range ex.SPFIPs {
		if strings.Contains(ip, ":") {
			terms = append(terms, "ip6:"+ip)
		} else {
			terms = append(terms, "ip4:"+ip)
		}
	}
	if ex.SPFInclude != "" {
		terms = append(terms, "include:"+ex.SPFInclude)
	}
	if len(terms) == 0 && ex.MXHost != "" {
		terms = append(terms, "a:"+strings.TrimSuffix(strings.ToLower(ex.MXHost), "."))
	}
	return terms
}

// FQDNProblem says why host is not a fully qualified domain name that
// other hosts can resolve (no dot, localhost, a .local/.localdomain/
// .internal name, an IP address); "" when it looks like one.
func FQDNProblem(host string) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case h == "":
		return "is empty"
	case net.ParseIP(h) != nil:
		return "is an IP address, not a host name"
	case !strings.Contains(h, "."):
		return "is not a fully qualified domain name (no dot)"
	case h == "localhost" || strings.HasSuffix(h, ".localhost") || strings.HasSuffix(h, ".local") ||
		strings.HasSuffix(h, ".localdomain") || strings.HasSuffix(h, ".internal") || strings.HasSuffix(h, ".lan"):
		return "is a local name that other hosts cannot resolve"
	}
	return ""
}

// hostWarning is the warning for records naming host: set hostname.
func hostWarning(what, host string) string {
	p := FQDNProblem(host)
	if p == "" {
		return ""
	}
	return fmt.Sprintf("%s target %q %s: set hostname in the config to this host's name in DNS (e.g. mta1.example.com)", what, host, p)
}

// Resolver is the DNS lookup the checks need; *dns.Resolver is one.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, domain string) ([]dns.MXHost, error)
}

func fq(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") + "." }

// Records returns the records domain should publish for keys (the
// domain's DKIM keys).
func Records(domain string, ex Expect, keys []dkim.Key) ([]Record, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	var out []Record
	spf := strings.Join(append(append([]string{"v=spf1"}, ex.spfTerms()...), "~all"), " ")
	spfRec := txt(KindSPF, fq(domain), spf)
	if len(ex.SPFIPs) == 0 && ex.SPFInclude == "" {
		spfRec.Warning = hostWarning("SPF a:", ex.MXHost)
		if spfRec.Warning == "" {
			spfRec.Warning = "no [sending] spf_ips configured: the record authorises the addresses of " + ex.MXHost + " (a:); list the egress IPs in spf_ips if mail leaves from other addresses"
		}
	}
	out = append(out, spfRec)
	for _, k := range keys {
		v, err := dkim.TXTValue(k.Signer.Public())
		if err != nil {
			return nil, err
		}
		out = append(out, txt(KindDKIM, dkim.RecordName(domain, k.Selector), v))
	}
	if len(keys) == 0 {
		out = append(out, Record{Kind: KindDKIM, Name: dkim.RecordName(domain, "<selector>"), Type: "TXT",
			Value: "(no DKIM key: run petrelctl dkim keygen " + domain + " SELECTOR)"})
	}
	bd := ex.BounceDomain
	if bd == "" {
		bd = "bounce." + domain
	}
	mx := Record{Kind: KindMX, Name: fq(bd), Type: "MX", Value: "10 " + fq(ex.MXHost)}
	mx.Zone = mx.Name + " IN MX " + mx.Value
	mx.Warning = hostWarning("MX", ex.MXHost)
	out = append(out, mx)
	rua := ex.DMARCReport
	if rua == "" {
		rua = "dmarc@" + domain
	}
	out = append(out, txt(KindDMARC, "_dmarc."+fq(domain), "v=DMARC1; p=none; rua=mailto:"+rua))
	return out, nil
}

func txt(kind, name, v string) Record {
	return Record{Kind: kind, Name: name, Type: "TXT", Value: v, Zone: name + " IN TXT " + dkim.QuoteTXT(v)}
}

// CheckDomain looks up every record of domain and grades it.
func CheckDomain(ctx context.Context, r Resolver, domain string, ex Expect, keys []dkim.Key) (Result, error) {
	recs, err := Records(domain, ex, keys)
	if err != nil {
		return Result{}, err
	}
	res := Result{Domain: strings.ToLower(strings.TrimSuffix(domain, ".")), Checked: time.Now().UTC()}
	for _, rec := range recs {
		c := Check{Record: rec}
		switch rec.Kind {
		case KindSPF:
			c = checkTXT(ctx, r, c, "v=spf1", func(v string) string { return spfMismatch(v, ex) })
		case KindDKIM:
			if len(keys) == 0 {
				c.State, c.Detail = Missing, "no DKIM key for this domain"
				break
			}
			c = checkTXT(ctx, r, c, "v=DKIM1", func(v string) string { return dkimMismatch(v, rec.Value) })
		case KindMX:
			c = checkMX(ctx, r, c, fq(ex.MXHost))
		case KindDMARC:
			c = checkTXT(ctx, r, c, "v=DMARC1", func(v string) string {
				if !strings.Contains(strings.ReplaceAll(v, " ", ""), ";p=") {
					return "no p= tag"
				}
				return ""
			})
		}
		res.Checks = append(res.Checks, c)
	}
	res.Status = grade(res.Checks)
	return res, nil
}

func grade(cs []Check) Status {
	ok := map[string]bool{KindSPF: true, KindDKIM: true, KindMX: true, KindDMARC: true}
	for _, c := range cs {
		if c.State != OK {
			ok[c.Kind] = false
		}
	}
	switch {
	case !ok[KindSPF] || !ok[KindDKIM] || !ok[KindMX]:
		return Unverified
	case !ok[KindDMARC]:
		return Usable
	}
	return Verified
}

// lookupErr turns a lookup error into a state: NXDOMAIN is missing,
// anything else an error.
func lookupErr(c Check, err error) Check {
	if errors.Is(err, dns.ErrNoSuchDomain) || errors.Is(err, dns.ErrNoMailHost) || errors.Is(err, dns.ErrNullMX) {
		c.State = Missing
		return c
	}
	c.State, c.Detail = Error, err.Error()
	return c
}

// checkTXT finds the TXT record at c.Name starting with prefix and asks
// mismatch (returning "" when fine) about it.
func checkTXT(ctx context.Context, r Resolver, c Check, prefix string, mismatch func(string) string) Check {
	txts, err := r.LookupTXT(ctx, c.Name)
	if err != nil {
		return lookupErr(c, err)
	}
	var matching []string
	for _, t := range txts {
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) {
			matching = append(matching, t)
		}
	}
	c.Found = matching
	switch {
	case len(matching) == 0:
		c.State = Missing
		if len(txts) > 0 {
			c.Found = txts
			c.State, c.Detail = Wrong, "no "+prefix+" record among the TXT records"
		}
	case len(matching) > 1:
		c.State, c.Detail = Wrong, fmt.Sprintf("%d %s records (must be one)", len(matching), prefix)
	default:
		if d := mismatch(matching[0]); d != "" {
			c.State, c.Detail = Wrong, d
		} else {
			c.State = OK
		}
	}
	return c
}

func spfMismatch(v string, ex Expect) string {
	terms := map[string]bool{}
	for _, t := range strings.Fields(strings.ToLower(v)) {
		terms[strings.TrimPrefix(t, "+")] = true
	}
	var missing []string
	for _, m := range ex.spfTerms() {
		if !terms[strings.ToLower(m)] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return "lacks " + strings.Join(missing, " ")
	}
	return ""
}

// dkimMismatch compares the p= tag of the published record with ours.
func dkimMismatch(found, want string) string {
	if tag(found, "p") != tag(want, "p") {
		if tag(found, "p") == "" {
			return "key revoked (empty p=)"
		}
		return "p= differs from the local key"
	}
	if k := tag(found, "k"); k != "" && !strings.EqualFold(k, tag(want, "k")) {
		return "k=" + k + " does not match the local key"
	}
	return ""
}

// tag returns the value of name in a DKIM tag list, whitespace removed.
func tag(list, name string) string {
	for _, kv := range strings.Split(list, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

func checkMX(ctx context.Context, r Resolver, c Check, host string) Check {
	hosts, err := r.LookupMX(ctx, c.Name)
	if err != nil {
		return lookupErr(c, err)
	}
	for _, h := range hosts {
		c.Found = append(c.Found, h.Host)
	}
	for _, h := range hosts {
		if !h.Implicit && fq(h.Host) == host {
			c.State = OK
			return c
		}
	}
	if len(hosts) == 1 && hosts[0].Implicit {
		c.State, c.Detail = Missing, "no MX record (only an address record)"
		return c
	}
	c.State, c.Detail = Wrong, "no MX points to "+strings.TrimSuffix(host, ".")
	return c
}
