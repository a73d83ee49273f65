package config

import (
	"strings"
	"testing"
	"time"
)

// TestHTTPAndMetricsKeys: the [http] limits and [metrics] keys parse,
// default as documented, and refuse bad values.
func TestHTTPAndMetricsKeys(t *testing.T) {
	d := Default()
	if d.HTTP.ReadHeaderTimeout.Duration != 10*time.Second || d.HTTP.PublicMaxConnsPerIP != 16 || !d.HTTP.Profiling ||
		d.Metrics.Access != MetricsLoopback || d.Metrics.Listen != "" {
		t.Fatalf("defaults: http %+v metrics %+v", d.HTTP.HTTPLimits, d.Metrics)
	}
	c, err := Parse("t.toml", []byte("[http]\nread_timeout = \"30s\"\npublic_max_conns_per_ip = 4\nprofiling = false\n[metrics]\nlisten = \"127.0.0.1:9025\"\naccess = \"key\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.ReadTimeout.Duration != 30*time.Second || c.HTTP.PublicMaxConnsPerIP != 4 || c.HTTP.Profiling ||
		c.HTTP.WriteTimeout.Duration != 2*time.Minute || c.Metrics.Listen != "127.0.0.1:9025" || c.Metrics.Access != MetricsKey {
		t.Fatalf("parsed: http %+v metrics %+v", c.HTTP.HTTPLimits, c.Metrics)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[http]\nidle_timeout = \"0s\"\n", "idle_timeout must be positive"},
		{"[http]\npublic_max_conns_per_ip = 0\n", "public_max_conns_per_ip"},
		{"[metrics]\naccess = \"everyone\"\n", "access \"everyone\""},
		{"[metrics]\nlisten = \"nohostport\"\n", "metrics: listen"},
		{"[metrics]\nlistn = \"x\"\n", `unknown key "metrics.listn"`},
	} {
		if _, err := Parse("t.toml", []byte(tc.toml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want error containing %q", tc.toml, err, tc.want)
		}
	}
}
