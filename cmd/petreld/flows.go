package main

import (
	"context"
	"log/slog"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/campaign/flow"
	"github.com/petrel-mta/petrel/ingest"
)

// openFlows sets up automation flows on the ESP database: their sends go
// through sub (ingest's one entry point), their templates come from tpls.
// The runner is started by startFlows once the queue's event log is
// followed; its custom-event writer closes before the ESP store.
func (d *daemon) openFlows(ctx context.Context, st *audience.Store, tpls *campaign.Templates, sub *ingest.Submitter, log *slog.Logger) (*flow.Service, error) {
	svc, err := flow.New(ctx, st, tpls, sub, d.policy.UnsubscribeURL, flow.Options{Logger: log,
		FrequencyCap: d.cfg.ESP.FlowFrequencyCap, FrequencyWindow: d.cfg.ESP.FlowFrequencyWindow.Duration})
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() error { svc.Close(); return nil })
	return svc, nil
}

// startFlows runs the flow runner until ctx ends (petreld's shutdown
// waits for it with the delivery goroutines): custom events, audience
// changes, opens and clicks from the event log, and due timers — the
// ones that came due while petreld was down first.
func (d *daemon) startFlows(ctx context.Context, svc *flow.Service, log flow.EventLog) {
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		svc.Run(ctx, log)
	}()
}
