package events

import (
	"context"
	"time"

	"github.com/petrel-mta/petrel/delivery"
)

// pauseRetry is the Until of a pause refusal: delivery defers the
// recipients on its retry schedule; the pause itself lasts until resumed.
const pauseRetry = time.Minute

// PauseShaper wraps a delivery.Shaper: for a paused stream AcquireConn,
// TryAcquireConn and AcquireMessage refuse with a *delivery.PolicyError
// that defers (never bounces); other streams go to the inner shaper
// unchanged. It also forwards the optional delivery.ConnTrier and
// delivery.TLSPolicy of the inner shaper (delivery finds them by type
// assertion, so a wrapper must implement every optional interface).
type PauseShaper struct {
	inner delivery.Shaper
	s     *Service
}

// Shaper returns inner wrapped so that paused streams are deferred.
func (s *Service) Shaper(inner delivery.Shaper) *PauseShaper {
	return &PauseShaper{inner: inner, s: s}
}

func (p *PauseShaper) refuse(stream string) error {
	reason, ok := p.s.Paused(stream)
	if !ok {
		return nil
	}
	return &delivery.PolicyError{Reason: "stream " + stream + " paused by alarm (" + reason + "); resume with petrelctl streams resume " + stream,
		Until: p.s.now().Add(pauseRetry)}
}

// AcquireConn implements delivery.Shaper.
func (p *PauseShaper) AcquireConn(ctx context.Context, d delivery.Dest) (delivery.ConnPermit, error) {
	if err := p.refuse(d.Stream); err != nil {
		return delivery.ConnPermit{}, err
	}
	if p.inner == nil {
		return delivery.ConnPermit{Release: func() {}}, nil
	}
	return p.inner.AcquireConn(ctx, d)
}

// AcquireMessage implements delivery.Shaper.
func (p *PauseShaper) AcquireMessage(ctx context.Context, d delivery.Dest, egress string) error {
	if err := p.refuse(d.Stream); err != nil {
		return err
	}
	if p.inner == nil {
		return nil
	}
	return p.inner.AcquireMessage(ctx, d, egress)
}

// TryAcquireConn implements delivery.ConnTrier, forwarding to the inner
// shaper when it implements it.
func (p *PauseShaper) TryAcquireConn(ctx context.Context, d delivery.Dest) (delivery.ConnPermit, string, bool, error) {
	if err := p.refuse(d.Stream); err != nil {
		return delivery.ConnPermit{}, "", false, err
	}
	if t, ok := p.inner.(delivery.ConnTrier); ok {
		return t.TryAcquireConn(ctx, d)
	}
	permit, err := p.AcquireConn(ctx, d)
	return permit, "", err == nil, err
}

// TLSMode implements delivery.TLSPolicy, forwarding to the inner shaper
// (opportunistic when it has no TLS policy, as delivery assumes then).
func (p *PauseShaper) TLSMode(d delivery.Dest) delivery.TLSMode {
	if t, ok := p.inner.(delivery.TLSPolicy); ok {
		return t.TLSMode(d)
	}
	return delivery.TLSOpportunistic
}

// Observe implements delivery.Shaper.
func (p *PauseShaper) Observe(d delivery.Dest, egress string, code int, enhanced, text string) {
	if p.inner != nil {
		p.inner.Observe(d, egress, code, enhanced, text)
	}
}
