package verify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are verify's Prometheus collectors.
type metrics struct {
	verdicts     *prometheus.CounterVec
	probeSeconds prometheus.Histogram
	jobAddresses prometheus.Counter
}

// newMetrics builds the collectors and registers them on reg (none when
// reg is nil).
func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_verify_verdicts_total", Help: "Addresses verified with the SMTP probe, by verdict.",
		}, []string{"verdict"}),
		probeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "petrel_verify_probe_seconds", Help: "Time to probe one batch of a domain's addresses over SMTP.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		jobAddresses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "petrel_verify_job_addresses_total", Help: "Addresses finished by bulk verification jobs.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.verdicts, m.probeSeconds, m.jobAddresses} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("verify: metrics: %w", err)
			}
		}
	}
	return m, nil
}
