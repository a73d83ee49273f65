package shaping

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the shaper's Prometheus collectors; they are registered on
// the registry given to New, or live unregistered when it is nil.
type metrics struct {
	wait      *prometheus.HistogramVec
	waitConn  prometheus.Observer
	waitMsg   prometheus.Observer
	actions   *prometheus.CounterVec
	suspended prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "petrel_shaping_wait_seconds",
			Help:    "Time AcquireConn (kind=conn) and AcquireMessage (kind=message) waited for a permit that was granted.",
			Buckets: []float64{0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10},
		}, []string{"kind"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_shaping_actions_total",
			Help: "Automation actions started or extended by remote replies, by action.",
		}, []string{"action"}),
		suspended: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "petrel_shaping_suspended",
			Help: "Shaping states (stream, source, rule) currently suspended.",
		}),
	}
	m.waitConn, m.waitMsg = m.wait.WithLabelValues("conn"), m.wait.WithLabelValues("message")
	if reg != nil {
		reg.MustRegister(m.wait, m.actions, m.suspended)
	}
	return m
}

func (m *metrics) observeWait(kind string, d time.Duration) {
	o := m.waitMsg
	if kind == "conn" {
		o = m.waitConn
	}
	o.Observe(d.Seconds())
}
