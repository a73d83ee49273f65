package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/internal/netx"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/queue"
)

// eventsPart wires package events: the late-bound queue OnEvent hook, the
// service, its HTTP API and the inbound bounce listener.
type eventsPart struct {
	svc     atomic.Pointer[events.Service]
	inbound *bounce.Inbound
}

// onEvent is queue.Options.OnEvent; events before the service exists are
// only in the log (the rules loop and webhooks read them from it later).
func (p *eventsPart) onEvent(ev queue.Event) {
	if s := p.svc.Load(); s != nil {
		s.OnEvent(ev)
	}
}

// setup creates the events service over the queue, policy and shaper.
func (p *eventsPart) setup(d *daemon, q *queue.Queue, pol *policy.Engine, sh *shaping.Shaper, reg prometheus.Registerer) error {
	svc, err := events.New(events.Options{
		Bounce:     d.cfg.Bounce,
		Webhooks:   d.cfg.Webhooks,
		Queue:      q,
		Rules:      d.rules,
		Suppressor: pol,
		Shaper:     sh,
		Dir:        filepath.Join(d.cfg.DataDir, "feedback"),
		Registry:   reg,
		Logger:     d.log.With("component", "events"),
	})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	p.svc.Store(svc)
	d.closers = append(d.closers, svc.Close)
	return nil
}

// run starts the service's loops and, when [bounce] listen is set, the
// inbound listener for the bounce domain (bound before returning, so a
// port clash fails start).
func (p *eventsPart) run(d *daemon) error {
	svc := p.svc.Load()
	bc := d.cfg.Bounce
	if bc.Listen != "" {
		in, err := bounce.NewInbound(bounce.InboundConfig{
			Domain:       bc.Domain,
			FBLAddresses: bc.FBLAddresses,
			Hostname:     d.cfg.Hostname,
			Handler:      svc.Handle,
			// smtp.read_timeout / write_timeout hold for every SMTP listener.
			ReadTimeout:  d.cfg.SMTP.ReadTimeout.Duration,
			WriteTimeout: d.cfg.SMTP.WriteTimeout.Duration,
			Logger:       d.log,
		})
		if err != nil {
			return fmt.Errorf("bounce inbound: %w", err)
		}
		ln, err := netx.Listen(bc.Listen)
		if err != nil {
			return fmt.Errorf("bounce listen: %w", err)
		}
		ln = netx.SMTP(ln)
		p.inbound = in
		go func() {
			if err := in.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				d.log.Error("bounce inbound server", "err", err)
			}
		}()
		d.log.Info("bounce inbound started", "listen", ln.Addr().String(), "domain", bc.Domain)
	}
	svc.Start(context.Background())
	return nil
}

// shutdown stops the inbound listener (the service closes with the other
// closers, before the queue).
func (p *eventsPart) shutdown(ctx context.Context) error {
	if p.inbound == nil {
		return nil
	}
	if err := p.inbound.Shutdown(ctx); err != nil {
		return fmt.Errorf("bounce inbound: %w", err)
	}
	return nil
}
