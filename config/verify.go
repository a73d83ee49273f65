package config

import (
	"errors"
	"time"
)

// VerifyConfig is the [verify] section: address verification (package
// verify). Durations are Go duration strings.
type VerifyConfig struct {
	// SMTPProbe enables stage 4 (RCPT TO probe). Off means verdicts stop
	// at syntax, domain and MX.
	SMTPProbe bool `toml:"smtp_probe"`
	// AtIngest runs the quick check (syntax, domain, MX; no SMTP) on every
	// recipient at SMTP RCPT and HTTP injection and refuses those that
	// cannot receive mail (550 5.1.2 / status "rejected"). DNS failures
	// never refuse.
	AtIngest bool `toml:"at_ingest"`
	// ProbeSender is the MAIL FROM of probes; "" means
	// "verify@<hostname>". "<>" sends the null sender.
	ProbeSender string `toml:"probe_sender"`
	// HeloName is the EHLO name of probes; "" means the daemon's hostname.
	HeloName string `toml:"helo_name"`
	// ConnectTimeout bounds the TCP connect to one MX host.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// CommandTimeout bounds each SMTP reply (greeting, EHLO, MAIL, RCPT);
	// a tarpit that answers slower is treated as a timeout.
	CommandTimeout Duration `toml:"command_timeout"`
	// GreylistRetries is how many times a 4xx RCPT reply is retried after
	// GreylistDelay before the address is reported "unknown".
	GreylistRetries int `toml:"greylist_retries"`
	// GreylistDelay is the wait before each greylist retry.
	GreylistDelay Duration `toml:"greylist_delay"`
	// MaxMXHosts is how many MX hosts (best preference first) are tried
	// when earlier ones cannot be reached.
	MaxMXHosts int `toml:"max_mx_hosts"`
	// RcptPerSession is how many addresses one SMTP session probes.
	RcptPerSession int `toml:"rcpt_per_session"`
	// ProviderRate is the sustained probe sessions per second per MX
	// provider (MX host's registered domain); ProviderBurst its burst.
	ProviderRate  float64 `toml:"provider_rate"`
	ProviderBurst int     `toml:"provider_burst"`
	// ProviderConns caps concurrent probe sessions per MX provider.
	ProviderConns int `toml:"provider_conns"`
	// BulkDomains is how many domains a bulk job probes at once.
	BulkDomains int `toml:"bulk_domains"`
	// DomainCacheTTL keeps MX answers and catch-all results per domain.
	DomainCacheTTL Duration `toml:"domain_cache_ttl"`
	// AddressCacheTTL keeps per-address results.
	AddressCacheTTL Duration `toml:"address_cache_ttl"`
	// MaxJobAddresses caps one bulk job.
	MaxJobAddresses int `toml:"max_job_addresses"`
	// JobsDir holds finished bulk job results; "" means
	// "<data_dir>/verify-jobs".
	JobsDir string `toml:"jobs_dir"`
	// DisposableList, RoleList, FreeList and ProviderList replace the
	// shipped data files (one entry per line, '#' comments); "" keeps the
	// shipped list.
	DisposableList string `toml:"disposable_list"`
	RoleList       string `toml:"role_list"`
	FreeList       string `toml:"free_list"`
	ProviderList   string `toml:"provider_list"`
}

func defaultVerify() VerifyConfig {
	return VerifyConfig{
		SMTPProbe:       true,
		ConnectTimeout:  Duration{10 * time.Second},
		CommandTimeout:  Duration{30 * time.Second},
		GreylistRetries: 1,
		GreylistDelay:   Duration{15 * time.Second},
		MaxMXHosts:      3,
		RcptPerSession:  50,
		ProviderRate:    2,
		ProviderBurst:   4,
		ProviderConns:   4,
		BulkDomains:     32,
		DomainCacheTTL:  Duration{time.Hour},
		AddressCacheTTL: Duration{6 * time.Hour},
		MaxJobAddresses: 1_000_000,
	}
}

func (v *VerifyConfig) validate() error {
	switch {
	case v.ConnectTimeout.Duration <= 0 || v.CommandTimeout.Duration <= 0:
		return errors.New("verify: connect_timeout and command_timeout must be positive")
	case v.GreylistRetries < 0 || v.GreylistDelay.Duration < 0:
		return errors.New("verify: greylist_retries and greylist_delay must not be negative")
	case v.MaxMXHosts <= 0 || v.RcptPerSession <= 0:
		return errors.New("verify: max_mx_hosts and rcpt_per_session must be positive")
	case v.ProviderRate <= 0 || v.ProviderBurst <= 0 || v.ProviderConns <= 0:
		return errors.New("verify: provider_rate, provider_burst and provider_conns must be positive")
	case v.BulkDomains <= 0 || v.MaxJobAddresses <= 0:
		return errors.New("verify: bulk_domains and max_job_addresses must be positive")
	case v.DomainCacheTTL.Duration < 0 || v.AddressCacheTTL.Duration < 0:
		return errors.New("verify: cache TTLs must not be negative")
	}
	return nil
}
