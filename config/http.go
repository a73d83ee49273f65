package config

import (
	"fmt"
	"net"
	"time"
)

// HTTPLimits are the [http] listener's timeouts and limits (issue 10.2:
// no client may hold a connection open for free).
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's header (slow headers).
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included, on the
	// API routes (an injection of 2x max_message_size must fit in it).
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing a response (a CPU profile's seconds
	// must fit in it).
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// PublicReadTimeout bounds reading a request body on the public routes
	// (/unsubscribe/{token}, /healthz, /metrics), from the end of its header.
	PublicReadTimeout Duration `toml:"public_read_timeout"`
	// PublicMaxConnsPerIP caps the requests one client IP may have in
	// progress on the public routes; more get 429.
	PublicMaxConnsPerIP int `toml:"public_max_conns_per_ip"`
	// Profiling mounts /debug/pprof/* (behind the API key).
	Profiling bool `toml:"profiling"`
}

func defaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout:   Duration{10 * time.Second},
		ReadTimeout:         Duration{2 * time.Minute},
		WriteTimeout:        Duration{2 * time.Minute},
		IdleTimeout:         Duration{2 * time.Minute},
		PublicReadTimeout:   Duration{10 * time.Second},
		PublicMaxConnsPerIP: 16,
		Profiling:           true,
	}
}

func (l *HTTPLimits) validate() error {
	for _, d := range []struct {
		name string
		v    Duration
	}{{"read_header_timeout", l.ReadHeaderTimeout}, {"read_timeout", l.ReadTimeout}, {"write_timeout", l.WriteTimeout},
		{"idle_timeout", l.IdleTimeout}, {"public_read_timeout", l.PublicReadTimeout}} {
		if d.v.Duration <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	if l.PublicMaxConnsPerIP <= 0 {
		return fmt.Errorf("public_max_conns_per_ip must be positive")
	}
	return nil
}

// Metrics access modes ([metrics] access).
const (
	// MetricsLoopback answers /metrics for loopback clients only (403 to
	// others), without a key.
	MetricsLoopback = "loopback"
	// MetricsKey needs an API key (Authorization: Bearer) from any client.
	MetricsKey = "key"
	// MetricsOpen answers anyone.
	MetricsOpen = "open"
)

// MetricsConfig is the [metrics] section: where /metrics is served and
// who may read it (it names sending domains and their volumes).
type MetricsConfig struct {
	// Listen is a separate host:port serving only /metrics (and
	// /healthz); "" serves /metrics on the [http] listener.
	Listen string `toml:"listen"`
	// Access is "loopback" (default), "key" or "open".
	Access string `toml:"access"`
}

func (m *MetricsConfig) validate() error {
	if m.Listen != "" {
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			return fmt.Errorf("listen %q: %w", m.Listen, err)
		}
	}
	switch m.Access {
	case "":
		m.Access = MetricsLoopback
	case MetricsLoopback, MetricsKey, MetricsOpen:
	default:
		return fmt.Errorf("access %q is not one of loopback, key, open", m.Access)
	}
	return nil
}
