package events

import (
	"context"
	"time"

	"github.com/petrel-mta/petrel/mta"
)

// pauseRetry is the Until of a pause refusal: delivery defers the
// recipients on its retry schedule; the pause itself lasts until resumed.
const pauseRetry = time.Minute

// PauseShaper wraps a mta.Shaper: for a paused stream AcquireConn,
// TryAcquireConn and AcquireMessage refuse with a *mta.PolicyError
// that defers (never bounces); other streams go to the inner shaper
// unchanged. It also forwards the optional mta.ConnTrier and
// mta.TLSPolicy of the inner shaper (delivery finds them by type
// assertion, so a wrapper must implement every optional interface).
type PauseShaper struct {
	inner mta.Shaper
	s     *Service
}

// Shaper returns inner wrapped so that paused streams are deferred.
func (s *Service) Shaper(inner mta.Shaper) *PauseShaper {
	return &PauseShaper{inner: inner, s: s}
}

func (p *PauseShaper) refuse(stream string) error {
	reason, ok := p.s.Paused(stream)
	if !ok {
		return nil
	}
	return &mta.PolicyError{Reason: "stream " + stream + " paused by alarm (" + reason + "); resume with petrelctl streams resume " + stream,
		Until: p.s.now().Add(pauseRetry)}
}

// AcquireConn implements mta.Shaper.
func (p *PauseShaper) AcquireConn(ctx context.Context, d mta.Dest) (mta.ConnPermit, error) {
	if err := p.refuse(d.Stream); err != nil {
		return mta.ConnPermit{}, err
	}
	if p.inner == nil {
		return mta.ConnPermit{Release: func() {}}, nil
	}
	return p.inner.AcquireConn(ctx, d)
}

// AcquireMessage implements mta.Shaper.
func (p *PauseShaper) AcquireMessage(ctx context.Context, d mta.Dest, egress string) error {
	if err := p.refuse(d.Stream); err != nil {
		return err
	}
	if p.inner == nil {
		return nil
	}
	return p.inner.AcquireMessage(ctx, d, egress)
}

// TryAcquireConn implements mta.ConnTrier, forwarding to the inner
// shaper when it implements it.
func (p *PauseShaper) TryAcquireConn(ctx context.Context, d mta.Dest) (mta.ConnPermit, string, bool, error) {
	if err := p.refuse(d.Stream); err != nil {
		return mta.ConnPermit{}, "", false, err
	}
	if t, ok := p.inner.(mta.ConnTrier); ok {
		return t.TryAcquireConn(ctx, d)
	}
	permit, err := p.AcquireConn(ctx, d)
	return permit, "", err == nil, err
}

// TLSMode implements mta.TLSPolicy, forwarding to the inner shaper
// (opportunistic when it has no TLS policy, as delivery assumes then).
func (p *PauseShaper) TLSMode(d mta.Dest) mta.TLSMode {
	if t, ok := p.inner.(mta.TLSPolicy); ok {
		return t.TLSMode(d)
	}
	return mta.TLSOpportunistic
}

// Observe implements mta.Shaper.
func (p *PauseShaper) Observe(d mta.Dest, egress string, code int, enhanced, text string) {
	if p.inner != nil {
		p.inner.Observe(d, egress, code, enhanced, text)
	}
}
