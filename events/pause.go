package events

import (
	"context"
	"time"

	"github.com/petrel-mta/petrel/delivery"
)

// pauseRetry is the Until of a pause refusal: delivery defers the
// recipients on its retry schedule; the pause itself lasts until resumed.
const pauseRetry = time.Minute

// PauseShaper wraps a delivery.Shaper: for a paused stream AcquireConn and
// AcquireMessage refuse with a *delivery.PolicyError that defers (never
// bounces); other streams go to the inner shaper unchanged.
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

// Observe implements delivery.Shaper.
func (p *PauseShaper) Observe(d delivery.Dest, egress string, code int, enhanced, text string) {
	if p.inner != nil {
		p.inner.Observe(d, egress, code, enhanced, text)
	}
}
