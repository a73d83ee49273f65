package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are ingest's Prometheus collectors; a nil *metrics records
// nothing.
type metrics struct {
	messages   *prometheus.CounterVec
	recipients *prometheus.CounterVec
	ack        *prometheus.HistogramVec
}

// Message results for petrel_ingest_messages_total.
const (
	resultQueued   = "queued"
	resultRejected = "rejected"
	resultError    = "error"
)

// newMetrics registers ingest's collectors on reg; nil reg means no
// metrics. Registering twice (SMTP and HTTP on one registry) reuses the
// already registered collectors.
func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_ingest_messages_total",
			Help: "Messages offered to ingest, by listener (smtp, http) and result (queued, rejected, error).",
		}, []string{"listener", "result"}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_ingest_recipients_total",
			Help: "Recipients queued by ingest, by listener.",
		}, []string{"listener"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "petrel_ingest_ack_seconds",
			Help:    "Time from the end of the message (DATA or request body) to the durable acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"listener"}),
	}
	m.messages = register(reg, m.messages)
	m.recipients = register(reg, m.recipients)
	m.ack = register(reg, m.ack)
	return m
}

// register registers c, or returns the identical collector already there.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) message(listener, result string) {
	if m != nil {
		m.messages.WithLabelValues(listener, result).Inc()
	}
}

func (m *metrics) queued(listener string, rcpts int, since time.Time) {
	if m != nil {
		m.messages.WithLabelValues(listener, resultQueued).Inc()
		m.recipients.WithLabelValues(listener).Add(float64(rcpts))
		m.ack.WithLabelValues(listener).Observe(time.Since(since).Seconds())
	}
}
