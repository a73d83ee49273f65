package events

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the event metrics; see README.md.
type metrics struct {
	messages      *prometheus.CounterVec // event, stream, provider
	bounces       *prometheus.CounterVec // reason, stream
	complaints    *prometheus.CounterVec // stream, domain
	forged        prometheus.Counter
	feedback      *prometheus.CounterVec // kind, outcome
	dropped       prometheus.Counter
	softSuppress  prometheus.Counter
	streamBounce  *prometheus.GaugeVec // stream
	streamCompl   *prometheus.GaugeVec // stream
	domainCompl   *prometheus.GaugeVec // stream, domain
	alarm         *prometheus.GaugeVec // stream, kind
	paused        *prometheus.GaugeVec // stream
	whDelivered   *prometheus.CounterVec
	whFailed      *prometheus.CounterVec
	collectorList []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_messages_total",
			Help: "Recipient events by type (received, delivered, deferred, bounced, expired, ...), stream and destination provider."},
			[]string{"event", "stream", "provider"}),
		bounces: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_bounces_total",
			Help: "Bounces (synchronous and asynchronous) by classifier reason and stream."}, []string{"reason", "stream"}),
		complaints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_complaints_total",
			Help: "Feedback-loop complaints by stream and sending domain."}, []string{"stream", "domain"}),
		forged: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_bounce_forged_total",
			Help: "Inbound reports whose VERP token did not verify (ignored)."}),
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_feedback_reports_total",
			Help: "Inbound reports by kind (dsn, arf, autoreply, unknown) and outcome (matched, unmatched, forged, ignored)."},
			[]string{"kind", "outcome"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_event_metrics_dropped_total",
			Help: "Events not counted in metrics because the metrics queue was full (webhooks and rules are unaffected)."}),
		softSuppress: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_soft_bounce_suppressions_total",
			Help: "Addresses suppressed for reaching the soft-bounce limit."}),
		streamBounce: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_stream_bounce_rate",
			Help: "Bounced / sent per stream over the alarm window."}, []string{"stream"}),
		streamCompl: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_stream_complaint_rate",
			Help: "Complaints / delivered per stream over the alarm window."}, []string{"stream"}),
		domainCompl: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_domain_complaint_rate",
			Help: "Complaints / delivered per stream and sending domain over the alarm window."}, []string{"stream", "domain"}),
		alarm: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_stream_alarm",
			Help: "1 while a stream's bounce or complaint rate is over its alarm threshold."}, []string{"stream", "kind"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_stream_paused",
			Help: "1 while a stream is paused by an alarm."}, []string{"stream"}),
		whDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_webhook_deliveries_total",
			Help: "Events delivered to a webhook (2xx)."}, []string{"webhook"}),
		whFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_webhook_failures_total",
			Help: "Failed webhook POST attempts (retried)."}, []string{"webhook"}),
	}
	m.collectorList = []prometheus.Collector{m.messages, m.bounces, m.complaints, m.forged, m.feedback, m.dropped,
		m.softSuppress, m.streamBounce, m.streamCompl, m.domainCompl, m.alarm, m.paused, m.whDelivered, m.whFailed}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectorList {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("events: register metrics: %w", err)
		}
	}
	return nil
}
