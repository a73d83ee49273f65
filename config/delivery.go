package config

import (
	"errors"
	"time"
)

// DeliveryConfig is the [delivery] section: outbound SMTP.
type DeliveryConfig struct {
	// SMTPPort is the port of remote MX hosts (default 25).
	SMTPPort int `toml:"smtp_port"`
	// RetrySchedule lists the delays between attempts; the last one repeats.
	RetrySchedule []Duration `toml:"retry_schedule"`
	// MaxQueueLifetime after which a deferred recipient expires and bounces.
	MaxQueueLifetime Duration `toml:"max_queue_lifetime"`
	// Workers is the number of concurrent outbound transactions.
	Workers int `toml:"workers"`
	// ConnectTimeout, CommandTimeout and DataTimeout bound the SMTP client.
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
	DataTimeout    Duration `toml:"data_timeout"`
	// IdleTimeout closes pooled connections unused this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// ShutdownTimeout is how long SIGTERM waits for in-flight transactions.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// RequireTLS refuses to send in clear text (default: opportunistic).
	RequireTLS bool `toml:"require_tls"`
	// TLSVerify checks remote certificates (opportunistic TLS normally
	// does not, as with Postfix's "may" level).
	TLSVerify bool `toml:"tls_verify"`
	// DeadHostTime is how long an MX address is marked down after a
	// connection to it fails (connect error, or lost before the
	// greeting); each further failure doubles it up to DeadHostMaxTime,
	// and a successful connection resets it. While an address is down,
	// mail for it is deferred without connecting. 0 disables the cache.
	DeadHostTime    Duration `toml:"dead_host_time"`
	DeadHostMaxTime Duration `toml:"dead_host_max_time"`
}

func defaultDelivery() DeliveryConfig {
	m := time.Minute
	return DeliveryConfig{
		SMTPPort: 25,
		RetrySchedule: []Duration{{m}, {5 * m}, {15 * m}, {30 * m}, {time.Hour},
			{2 * time.Hour}, {4 * time.Hour}},
		MaxQueueLifetime: Duration{5 * 24 * time.Hour},
		Workers:          64,
		ConnectTimeout:   Duration{30 * time.Second},
		CommandTimeout:   Duration{5 * time.Minute},
		DataTimeout:      Duration{10 * time.Minute},
		IdleTimeout:      Duration{30 * time.Second},
		ShutdownTimeout:  Duration{30 * time.Second},
		DeadHostTime:     Duration{time.Minute},
		DeadHostMaxTime:  Duration{time.Hour},
	}
}

func (d *DeliveryConfig) validate() error {
	if d.SMTPPort <= 0 || d.SMTPPort > 65535 {
		return errors.New("smtp_port must be 1..65535")
	}
	if len(d.RetrySchedule) == 0 {
		return errors.New("retry_schedule must not be empty")
	}
	for _, r := range d.RetrySchedule {
		if r.Duration <= 0 {
			return errors.New("retry_schedule entries must be positive")
		}
	}
	if d.MaxQueueLifetime.Duration <= 0 {
		return errors.New("max_queue_lifetime must be positive")
	}
	if d.Workers <= 0 {
		return errors.New("workers must be positive")
	}
	if d.DeadHostTime.Duration < 0 || d.DeadHostMaxTime.Duration < d.DeadHostTime.Duration {
		return errors.New("dead_host_time must not be negative and dead_host_max_time not below it")
	}
	return nil
}

// Retries returns RetrySchedule as plain durations.
func (d *DeliveryConfig) Retries() []time.Duration {
	out := make([]time.Duration, len(d.RetrySchedule))
	for i, r := range d.RetrySchedule {
		out[i] = r.Duration
	}
	return out
}
