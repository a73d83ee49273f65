package config

// This file holds the sections owned by later subsystems. Each grows with
// its package: bounce (BounceConfig, Webhook validation), verify
// (VerifyConfig).

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// BounceConfig is the [bounce] section: VERP return paths, the inbound
// listener for the bounce domain, suppression rules fed by bounces and
// complaints, and the rate alarms.
type BounceConfig struct {
	// Domain is the bounce domain; empty disables VERP.
	Domain string `toml:"domain"`
	// Secret signs VERP tokens (HMAC-SHA256).
	Secret string `toml:"secret"`
	// RulesFile is an operator classification rules file (the format of
	// bounce/rules.toml) merged over the shipped rules: its entries are
	// tried first. "" uses the shipped rules only.
	RulesFile string `toml:"rules_file"`
	// Listen is the "host:port" of the SMTP listener that receives
	// asynchronous bounces and feedback reports for Domain and
	// FBLAddresses. Empty (the default) starts no inbound listener.
	Listen string `toml:"listen"`
	// FBLAddresses are extra full addresses the inbound listener accepts
	// (feedback-loop report addresses registered with mailbox providers).
	FBLAddresses []string `toml:"fbl_addresses"`
	// SoftBounceLimit suppresses an address in a stream after this many
	// soft bounces (of distinct messages) within SoftBounceWindow; 0
	// disables the rule.
	SoftBounceLimit int `toml:"soft_bounce_limit"`
	// SoftBounceWindow is the sliding window of SoftBounceLimit.
	SoftBounceWindow Duration `toml:"soft_bounce_window"`
	// ComplaintRateAlarm is the complaint rate (complaints / delivered) of
	// a stream over AlarmWindow that raises an alarm (Gmail: 0.3%).
	ComplaintRateAlarm float64 `toml:"complaint_rate_alarm"`
	// BounceRateAlarm is the bounce rate (bounced / sent) of a stream over
	// AlarmWindow that raises an alarm.
	BounceRateAlarm float64 `toml:"bounce_rate_alarm"`
	// AlarmWindow is the sliding window rates are computed over.
	AlarmWindow Duration `toml:"alarm_window"`
	// AlarmMinSample is the number of messages a stream must have sent in
	// AlarmWindow before its rates can raise an alarm.
	AlarmMinSample int `toml:"alarm_min_sample"`
	// PauseMarketingOnAlarm pauses MarketingStream when it raises an
	// alarm; it resumes only by operator action (API or petrelctl).
	PauseMarketingOnAlarm bool `toml:"pause_marketing_on_alarm"`
	// MarketingStream is the stream name complaints suppress in and alarms
	// may pause.
	MarketingStream string `toml:"marketing_stream"`
}

func defaultBounce() BounceConfig {
	return BounceConfig{
		SoftBounceLimit:    5,
		SoftBounceWindow:   Duration{72 * time.Hour},
		ComplaintRateAlarm: 0.003,
		BounceRateAlarm:    0.05,
		AlarmWindow:        Duration{24 * time.Hour},
		AlarmMinSample:     100,
		MarketingStream:    "marketing",
	}
}

func (b *BounceConfig) validate() error {
	b.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(b.Domain), "."))
	if b.Listen != "" {
		if _, _, err := net.SplitHostPort(b.Listen); err != nil {
			return fmt.Errorf("listen %q must be host:port: %w", b.Listen, err)
		}
		if b.Domain == "" && len(b.FBLAddresses) == 0 {
			return errors.New("listen needs domain or fbl_addresses: the listener accepts mail only for them")
		}
		if b.Domain != "" && b.Secret == "" {
			return errors.New("listen with a domain needs secret: bounces are matched by signed VERP return paths")
		}
	}
	for i, a := range b.FBLAddresses {
		if at := strings.LastIndexByte(a, '@'); at <= 0 || at == len(a)-1 || strings.ContainsAny(a, " <>") {
			return fmt.Errorf("fbl_addresses[%d]: %q is not an address", i, a)
		}
	}
	if b.SoftBounceLimit < 0 {
		return fmt.Errorf("soft_bounce_limit must be >= 0, got %d", b.SoftBounceLimit)
	}
	if b.SoftBounceLimit > 0 && b.SoftBounceWindow.Duration <= 0 {
		return errors.New("soft_bounce_window must be positive")
	}
	for name, v := range map[string]float64{"complaint_rate_alarm": b.ComplaintRateAlarm, "bounce_rate_alarm": b.BounceRateAlarm} {
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("%s must be in (0, 1], got %v", name, v)
		}
	}
	if b.AlarmWindow.Duration < time.Minute {
		return fmt.Errorf("alarm_window must be at least 1m, got %s", b.AlarmWindow.Duration)
	}
	if b.AlarmMinSample < 1 {
		return fmt.Errorf("alarm_min_sample must be >= 1, got %d", b.AlarmMinSample)
	}
	if b.MarketingStream == "" {
		return errors.New("marketing_stream must not be empty")
	}
	return nil
}

// Webhook defaults.
const (
	DefaultWebhookTimeout    = 10 * time.Second
	DefaultWebhookMaxBackoff = 10 * time.Minute
)

// validate checks one [[webhooks]] entry and fills its defaults.
func (w *Webhook) validate() error {
	if w.URL == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q must be an absolute http(s) URL", w.URL)
	}
	if w.Secret == "" {
		return errors.New("secret is required (events are signed)")
	}
	for i, e := range w.Events {
		if e == "" || strings.ContainsAny(e, " ,") {
			return fmt.Errorf("events[%d]: %q is not an event type", i, e)
		}
	}
	if w.Timeout.Duration == 0 {
		w.Timeout.Duration = DefaultWebhookTimeout
	}
	if w.MaxBackoff.Duration == 0 {
		w.MaxBackoff.Duration = DefaultWebhookMaxBackoff
	}
	if w.Timeout.Duration < 0 || w.MaxBackoff.Duration < time.Second {
		return errors.New("timeout must be positive and max_backoff at least 1s")
	}
	return nil
}

// VerifyConfig lives in verify.go.
