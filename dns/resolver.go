package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/idna"
)

// DNS lookup errors. Test them with errors.Is.
var (
	// ErrNullMX: the domain publishes a null MX (RFC 7505) and accepts no mail.
	ErrNullMX = errors.New("domain accepts no mail (null MX)")
	// ErrNoSuchDomain: the name does not exist (NXDOMAIN).
	ErrNoSuchDomain = errors.New("no such domain (NXDOMAIN)")
	// ErrNoMailHost: the domain exists but has no MX and no A/AAAA records
	// (or a host has no addresses).
	ErrNoMailHost = errors.New("no mail host (no MX and no A/AAAA)")
	// ErrTemporary: SERVFAIL, timeout or another failure worth retrying.
	ErrTemporary = errors.New("temporary DNS failure")
)

// Cache limits.
const (
	defaultCacheSize   = 50000
	defaultNegativeTTL = 60 * time.Second
	maxCacheTTL        = 24 * time.Hour
	maxNegativeTTL     = time.Hour
)

// MXHost is one mail exchanger of a domain.
type MXHost struct {
	// Host is the lower-cased host name without trailing dot.
	Host string
	// Pref is the MX preference (lower is tried first).
	Pref uint16
	// Implicit is true when the domain has no MX and Host is the domain
	// itself (RFC 5321 section 5.1 implicit MX).
	Implicit bool
}

// Resolver is a stub resolver on miekg/dns: UDP with TCP fallback on
// truncation and a bounded, TTL-respecting cache of positive and negative
// answers. It is safe for concurrent use.
type Resolver struct {
	addr    string
	udp     *mdns.Client
	tcp     *mdns.Client
	log     *slog.Logger
	now     func() time.Time
	maxSize int
	lookups *prometheus.CounterVec

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	rcode   int
	answer  []mdns.RR
	expires time.Time
}

// NewResolver returns a resolver that asks the recursive resolver at addr
// ("host:port"; a bare host gets port 53; "" means the first nameserver of
// /etc/resolv.conf). timeout bounds one exchange (0 means 5s).
func NewResolver(addr string, timeout time.Duration, log *slog.Logger) (*Resolver, error) {
	if addr == "" {
		cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("dns: read resolv.conf: %w", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("dns: no nameserver in /etc/resolv.conf")
		}
		addr = net.JoinHostPort(cc.Servers[0], cc.Port)
	} else if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "53")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		addr:    addr,
		udp:     &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232},
		tcp:     &mdns.Client{Net: "tcp", Timeout: timeout},
		log:     log,
		now:     time.Now,
		maxSize: defaultCacheSize,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_dns_lookups_total",
			Help: "DNS lookups by result (cached, ok, nxdomain, nodata, temporary).",
		}, []string{"result"}),
		cache: map[cacheKey]cacheEntry{},
	}, nil
}

// Register adds the resolver's metrics to reg. Registering twice on the
// same registry is not an error.
func (r *Resolver) Register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(r.lookups); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("dns: register dns metrics: %w", err)
		}
	}
	return nil
}

// toASCII converts a (possibly Unicode) domain to its lower-case A-label
// form without trailing dot.
func toASCII(name string) (string, error) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if name == "" {
		return "", fmt.Errorf("empty domain: %w", ErrNoSuchDomain)
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(name)
			if err != nil {
				return "", fmt.Errorf("bad domain %q: %w: %w", name, ErrNoSuchDomain, err)
			}
			return a, nil
		}
	}
	if _, ok := mdns.IsDomainName(name); !ok {
		return "", fmt.Errorf("bad domain %q: %w", name, ErrNoSuchDomain)
	}
	return name, nil
}

// query returns the answer records of type qtype (CNAMEs followed by the
// recursive resolver are skipped) or an error wrapping ErrNoSuchDomain or
// ErrTemporary. An empty answer with a nil error is NODATA.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	fq := mdns.Fqdn(name)
	key := cacheKey{fq, qtype}
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[key]
	if ok && now.After(e.expires) {
		delete(r.cache, key)
		ok = false
	}
	r.mu.Unlock()
	if ok {
		r.lookups.WithLabelValues("cached").Inc()
		return r.result(fq, qtype, e)
	}

	m := new(mdns.Msg)
	m.SetQuestion(fq, qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	start := time.Now()
	resp, _, err := r.udp.ExchangeContext(ctx, m, r.addr)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, m, r.addr)
	}
	if err != nil {
		r.lookups.WithLabelValues("temporary").Inc()
		r.log.Debug("dns exchange failed", "name", fq, "type", mdns.TypeToString[qtype], "err", err,
			"duration", time.Since(start))
		return nil, fmt.Errorf("dns %s %s: %w: %w", mdns.TypeToString[qtype], name, ErrTemporary, err)
	}
	e = cacheEntry{rcode: resp.Rcode}
	switch resp.Rcode {
	case mdns.RcodeSuccess:
		var ttl uint32 = uint32(maxCacheTTL / time.Second)
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype {
				e.answer = append(e.answer, rr)
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
		if len(e.answer) > 0 {
			e.expires = now.Add(time.Duration(ttl) * time.Second)
		} else {
			e.expires = now.Add(negativeTTL(resp))
		}
	case mdns.RcodeNameError:
		e.expires = now.Add(negativeTTL(resp))
	default:
		// SERVFAIL, REFUSED, ...: not cached.
		r.lookups.WithLabelValues("temporary").Inc()
		return r.result(fq, qtype, e)
	}
	r.store(key, e)
	switch {
	case e.rcode == mdns.RcodeNameError:
		r.lookups.WithLabelValues("nxdomain").Inc()
	case len(e.answer) == 0:
		r.lookups.WithLabelValues("nodata").Inc()
	default:
		r.lookups.WithLabelValues("ok").Inc()
	}
	return r.result(fq, qtype, e)
}

func (r *Resolver) result(fq string, qtype uint16, e cacheEntry) ([]mdns.RR, error) {
	switch e.rcode {
	case mdns.RcodeSuccess:
		return e.answer, nil
	case mdns.RcodeNameError:
		return nil, fmt.Errorf("dns %s %s: %w", mdns.TypeToString[qtype], strings.TrimSuffix(fq, "."), ErrNoSuchDomain)
	default:
		return nil, fmt.Errorf("dns %s %s: %s: %w", mdns.TypeToString[qtype], strings.TrimSuffix(fq, "."),
			mdns.RcodeToString[e.rcode], ErrTemporary)
	}
}

// negativeTTL is the RFC 2308 negative caching time: min(SOA TTL,
// SOA MINIMUM), capped.
func negativeTTL(resp *mdns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(d, maxNegativeTTL)
		}
	}
	return defaultNegativeTTL
}

func (r *Resolver) store(key cacheKey, e cacheEntry) {
	if !e.expires.After(r.now()) {
		return // TTL 0: do not cache
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.maxSize {
		now := r.now()
		for k, v := range r.cache {
			if now.After(v.expires) {
				delete(r.cache, k)
			}
		}
		// Still full: drop arbitrary entries (map order is random).
		for k := range r.cache {
			if len(r.cache) < r.maxSize {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// LookupMX returns the mail exchangers of domain sorted by preference,
// random among equal preferences. A domain without MX records but with
// A/AAAA records gets one implicit MX, the domain itself. Errors wrap
// ErrNullMX, ErrNoSuchDomain, ErrNoMailHost or ErrTemporary.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MXHost, error) {
	name, err := toASCII(domain)
	if err != nil {
		return nil, err
	}
	rrs, err := r.query(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	hosts := make([]MXHost, 0, len(rrs))
	null := false
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		h := strings.TrimSuffix(strings.ToLower(mx.Mx), ".")
		if h == "" {
			null = true
			continue
		}
		hosts = append(hosts, MXHost{Host: h, Pref: mx.Preference})
	}
	if len(hosts) == 0 && null {
		return nil, fmt.Errorf("%s: %w", name, ErrNullMX)
	}
	if len(hosts) == 0 {
		ips, err := r.LookupIP(ctx, name)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%s: %w", name, ErrNoMailHost)
		}
		return []MXHost{{Host: name, Implicit: true}}, nil
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b MXHost) int { return int(a.Pref) - int(b.Pref) })
	return hosts, nil
}

// LookupIP returns host's IPv4 addresses, then its IPv6 addresses. A host
// that is an IP literal is returned as is. A host with neither gives an
// error wrapping ErrNoMailHost (NODATA) or ErrNoSuchDomain; a temporary
// failure of both queries wraps ErrTemporary.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	name, err := toASCII(host)
	if err != nil {
		return nil, err
	}
	var (
		wg        sync.WaitGroup
		a4, a6    []mdns.RR
		err4, e6r error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a6, e6r = r.query(ctx, name, mdns.TypeAAAA)
	}()
	a4, err4 = r.query(ctx, name, mdns.TypeA)
	wg.Wait()
	ips := make([]netip.Addr, 0, len(a4)+len(a6))
	for _, rr := range a4 {
		if a, ok := netip.AddrFromSlice(rr.(*mdns.A).A.To4()); ok {
			ips = append(ips, a)
		}
	}
	for _, rr := range a6 {
		if a, ok := netip.AddrFromSlice(rr.(*mdns.AAAA).AAAA.To16()); ok {
			ips = append(ips, a)
		}
	}
	if len(ips) > 0 {
		return ips, nil
	}
	switch {
	case errors.Is(err4, ErrTemporary):
		return nil, err4
	case errors.Is(e6r, ErrTemporary):
		return nil, e6r
	case err4 != nil:
		return nil, err4
	case e6r != nil:
		return nil, e6r
	}
	return nil, fmt.Errorf("%s has no A/AAAA records: %w", name, ErrNoMailHost)
}

// LookupA returns name's IPv4 addresses only (DNS blocklist queries:
// one A query, no AAAA). NXDOMAIN wraps ErrNoSuchDomain; a name with no
// A records returns (nil, nil).
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	fq, err := toASCII(name)
	if err != nil {
		return nil, err
	}
	rrs, err := r.query(ctx, fq, mdns.TypeA)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, rr := range rrs {
		if a, ok := rr.(*mdns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				ips = append(ips, ip)
			}
		}
	}
	return ips, nil
}

// LookupTXT returns the TXT records of name, each record's strings
// joined. A name without TXT records returns (nil, nil); NXDOMAIN wraps
// ErrNoSuchDomain.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	n, err := toASCII(name)
	if err != nil {
		return nil, err
	}
	rrs, err := r.query(ctx, n, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupCNAME returns the target of name's CNAME record, lower-cased and
// without trailing dot, or "" when name has no CNAME (it may still have
// other records). NXDOMAIN wraps ErrNoSuchDomain.
func (r *Resolver) LookupCNAME(ctx context.Context, name string) (string, error) {
	n, err := toASCII(name)
	if err != nil {
		return "", err
	}
	rrs, err := r.query(ctx, n, mdns.TypeCNAME)
	if err != nil {
		return "", err
	}
	for _, rr := range rrs {
		if c, ok := rr.(*mdns.CNAME); ok {
			return strings.TrimSuffix(strings.ToLower(c.Target), "."), nil
		}
	}
	return "", nil
}
