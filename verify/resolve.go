package verify

import (
	"context"
	"errors"
	"strings"

	"github.com/petrel-mta/petrel/dns"
)

// domainInfo is the cached outcome of stages 2 and 3 for one domain.
type domainInfo struct {
	domain DomainStage
	mx     MXStage
}

// domainInfo runs the domain and MX stages through delivery's resolver,
// cached for domain_cache_ttl when the answer was definite.
func (v *Verifier) domainInfo(ctx context.Context, domain string) domainInfo {
	if di, ok := v.domains.get(domain, v.now()); ok {
		return di
	}
	di := v.lookupDomain(ctx, domain)
	if di.domain.Status != StatusTemporary && di.mx.Status != StatusTemporary {
		v.domains.put(domain, di, v.now().Add(v.cfg.DomainCacheTTL.Duration))
	}
	return di
}

func (v *Verifier) lookupDomain(ctx context.Context, domain string) domainInfo {
	var di domainInfo
	mxs, err := v.res.LookupMX(ctx, domain)
	switch {
	case errors.Is(err, dns.ErrNoSuchDomain):
		di.domain = DomainStage{Status: StatusNotFound, Detail: err.Error()}
		di.mx.Status = StatusSkipped
		return di
	case errors.Is(err, dns.ErrNullMX):
		di.domain.Status = StatusExists
		di.mx = MXStage{Status: StatusNullMX, Detail: "domain publishes a null MX (RFC 7505): it accepts no mail"}
		return di
	case errors.Is(err, dns.ErrNoMailHost):
		di.domain.Status = StatusExists
		di.mx = MXStage{Status: StatusNoMailHost, Detail: err.Error()}
		return di
	case err != nil:
		di.domain = DomainStage{Status: StatusTemporary, Detail: err.Error()}
		di.mx.Status = StatusSkipped
		return di
	}
	di.domain.Status = StatusExists
	di.mx.Status = StatusOK
	temporary := false
	var lastErr error
	for i, m := range mxs {
		host := strings.TrimSuffix(strings.ToLower(m.Host), ".")
		if i == 0 && m.Implicit {
			di.mx.Status = StatusImplicit
		}
		h := MXHost{Host: host, Preference: m.Pref}
		if i < v.cfg.MaxMXHosts {
			ips, err := v.res.LookupIP(ctx, host)
			if err != nil {
				lastErr = err
				temporary = temporary || !errors.Is(err, dns.ErrNoSuchDomain) && !errors.Is(err, dns.ErrNoMailHost)
			}
			h.IPs = ips
		}
		di.mx.Hosts = append(di.mx.Hosts, h)
	}
	for _, h := range di.mx.Hosts {
		if len(h.IPs) > 0 {
			return di
		}
	}
	// No MX host (among the first max_mx_hosts) has an address.
	if temporary {
		di.mx.Status = StatusTemporary
	} else {
		di.mx.Status = StatusUnresolvable
	}
	if lastErr != nil {
		di.mx.Detail = lastErr.Error()
	}
	return di
}
