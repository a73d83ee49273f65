package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/queue"
	"github.com/petrel-mta/petrel/reputation"
)

// newReputation builds the blocklist monitor of [reputation]: its API is
// mounted whether or not scheduled checks are enabled (petrelctl
// reputation check works either way); petreld runs its schedule only when
// reputation.enabled is set.
func newReputation(cfg *config.Config, res *dns.Resolver, q *queue.Queue, sh *shaping.Shaper, pol *policy.Engine,
	reg *prometheus.Registry, log *slog.Logger) (*reputation.Checker, error) {
	c, err := reputation.New(reputation.Options{
		Lists:          reputation.ListsFromConfig(cfg.Reputation.Lists),
		Resolver:       res,
		Targets:        func() []reputation.Target { return reputation.TargetsFromConfig(cfg, pol.Domains()) },
		Interval:       cfg.Reputation.Interval.Duration,
		Timeout:        cfg.Reputation.Timeout.Duration,
		PauseOnListing: cfg.Reputation.PauseOnListing,
		Pauser:         sh,
		Events:         q,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	return c, c.Register(reg)
}
