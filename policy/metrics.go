package policy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	suppressed    prometheus.Counter
	senderRefused prometheus.Counter
	listUnsub     prometheus.Counter
	signed        prometheus.Counter
	signSeconds   prometheus.Histogram
	unsubscribed  *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_suppression_hits_total", Help: "Recipients found suppressed (ingest and delivery checks).",
		}),
		senderRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_sender_domain_refused_total", Help: "Messages refused by require_domain_status.",
		}),
		listUnsub: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_list_unsubscribe_added_total", Help: "Messages given List-Unsubscribe headers.",
		}),
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_dkim_signed_total", Help: "Messages DKIM-signed.",
		}),
		signSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "petrel_dkim_sign_seconds", Help: "Time to DKIM-sign one message (all its signatures).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 12),
		}),
		unsubscribed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_unsubscribes_total", Help: "One-click and form unsubscribes by stream.",
		}, []string{"stream"}),
	}
	if reg != nil {
		m.suppressed = register(reg, m.suppressed)
		m.senderRefused = register(reg, m.senderRefused)
		m.listUnsub = register(reg, m.listUnsub)
		m.signed = register(reg, m.signed)
		m.signSeconds = register(reg, m.signSeconds)
		m.unsubscribed = register(reg, m.unsubscribed)
	}
	return m
}

// register adds c to reg; when an equal collector is already there (a
// second Engine on the same registry) that one is used.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("policy: metrics: %v", err)) // programming error: name clash
	}
	return c
}
