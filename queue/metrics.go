package queue

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers gauges read from Stats on reg:
// petrel_queue_recipients{state}, petrel_queue_messages,
// petrel_queue_ready_recipients, petrel_queue_inflight_recipients,
// petrel_queue_oldest_message_age_seconds, and with a free-space reserve
// petrel_queue_free_bytes and petrel_queue_storage_low (1 while new mail
// is refused for lack of disk space).
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
	if q.space.enabled {
		gauges = append(gauges,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_free_bytes",
				Help: "Free space of the spool's file system."},
				func() float64 { return float64(max(q.space.free(), 0)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_queue_storage_low",
				Help: "1 while free disk space is below queue.min_free_space and new mail is refused."},
				func() float64 {
					if q.StorageLow() {
						return 1
					}
					return 0
				}))
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
