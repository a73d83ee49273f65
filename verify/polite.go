package verify

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/time/rate"

	"github.com/petrel-mta/petrel/mta"
)

// probeStream is the stream name probes use when asking a Shaper.
const probeStream = "verify"

// politeness limits probe sessions per MX provider: a token bucket
// (provider_rate, provider_burst) and a cap on concurrent sessions
// (provider_conns). A provider is the registered domain of the MX host
// (aspmx.l.google.com -> google.com), so every domain hosted by one
// provider shares its budget. When a mta.Shaper (policy's shaping) is
// given it is asked as well, so probes count against the same per-MX
// budgets as real mail.
type politeness struct {
	rate   rate.Limit
	burst  int
	conns  int
	shaper mta.Shaper

	mu        sync.Mutex
	providers map[string]*provider
}

type provider struct {
	lim *rate.Limiter
	sem chan struct{}
}

func newPoliteness(r float64, burst, conns int, shaper mta.Shaper) *politeness {
	return &politeness{rate: rate.Limit(r), burst: burst, conns: conns, shaper: shaper, providers: map[string]*provider{}}
}

// providerOf returns the registered domain of an MX host name.
func providerOf(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if p, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return p
	}
	return host
}

// acquire waits until a session to host (serving domain) may start and
// returns the function that ends it, and the egress (source IP, EHLO
// name) policy chose, if any.
func (p *politeness) acquire(ctx context.Context, domain, host string) (func(), mta.Egress, error) {
	key := providerOf(host)
	p.mu.Lock()
	pv := p.providers[key]
	if pv == nil {
		pv = &provider{lim: rate.NewLimiter(p.rate, p.burst), sem: make(chan struct{}, p.conns)}
		p.providers[key] = pv
	}
	p.mu.Unlock()
	select {
	case pv.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, mta.Egress{}, fmt.Errorf("waiting for a session slot at %s: %w", key, ctx.Err())
	}
	if err := pv.lim.Wait(ctx); err != nil {
		<-pv.sem
		return nil, mta.Egress{}, fmt.Errorf("rate limit at %s: %w", key, err)
	}
	release := func() { <-pv.sem }
	var egress mta.Egress
	if p.shaper != nil {
		permit, err := p.shaper.AcquireConn(ctx, mta.Dest{Domain: domain, MXHost: strings.TrimSuffix(strings.ToLower(host), "."), Stream: probeStream})
		if err != nil {
			release()
			return nil, mta.Egress{}, fmt.Errorf("shaping: %w", err)
		}
		egress = permit.Egress
		release = func() {
			if permit.Release != nil {
				permit.Release()
			}
			<-pv.sem
		}
	}
	return release, egress, nil
}

// observe reports a probe reply to the Shaper so its automation (throttle
// on 421, suspend on blocks) sees probe traffic too.
func (p *politeness) observe(domain, host string, r reply) {
	if p.shaper == nil || r.Code == 0 {
		return
	}
	p.shaper.Observe(mta.Dest{Domain: domain, MXHost: strings.TrimSuffix(strings.ToLower(host), "."), Stream: probeStream}, "", r.Code, r.Enhanced, r.Text)
}
