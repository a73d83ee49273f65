package queue

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers gauges read from Stats on reg:
// petrel_queue_recipients{state}, petrel_queue_messages,
// petrel_queue_ready_recipients, petrel_queue_inflight_recipients and
// petrel_queue_oldest_message_age_seconds.
func (q *Queue) RegisterMetrics(reg prometheus.Registerer) error {
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_messages",
			Help: "Messages with at least one live recipient."},
			func() float64 { return float64(q.Stats().Messages) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_ready_recipients",
			Help: "Due recipients waiting in memory for delivery."},
			func() float64 { return float64(q.Stats().Ready) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_inflight_recipients",
			Help: "Recipients handed to delivery and not yet completed."},
			func() float64 { return float64(q.Stats().InFlight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_oldest_message_age_seconds",
			Help: "Age of the oldest live message."},
			func() float64 { return q.Stats().OldestAgeSeconds }),
	}
	for _, st := range []RcptState{StateQueued, StateDeferred, StateHeld} {
		gauges = append(gauges, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_recipients",
			Help: "Live recipients by state.", ConstLabels: prometheus.Labels{"state": string(st)}},
			func() float64 { return float64(q.counters[stateCounter(st)].Load()) }))
	}
	for _, g := range gauges {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("queue: register metrics: %w", err)
		}
	}
	return nil
}
