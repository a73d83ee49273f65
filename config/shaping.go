package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ShapingConfig is the [shaping] section owned by policy's traffic
// shaping: per-destination rules, automation on replies, streams, egress
// pools and warm-up. The rules shipped in policy/shaping/defaults.toml
// (same schema as this section) apply underneath: a [[shaping.rule]] with
// the name of a shipped rule replaces it, others are added, and
// [[shaping.automation]] entries are added to the shipped ones.
type ShapingConfig struct {
	// NoDefaults drops the shipped rules and automation entirely.
	NoDefaults bool `toml:"no_defaults"`
	// MaxWait is the longest AcquireConn/AcquireMessage waits for a
	// connection slot or a rate limiter before refusing with a deferral
	// instead (so workers are not pinned by a slow destination). Default 10s.
	MaxWait Duration `toml:"max_wait"`
	// Rules are [[shaping.rule]] entries.
	Rules []ShapingRule `toml:"rule"`
	// Automation are [[shaping.automation]] entries.
	Automation []AutomationRule `toml:"automation"`
	// Streams maps a stream name ("transactional", "marketing", custom) to
	// an egress pool name. Streams not listed use the pool named
	// "default", or the first pool when none is named so.
	Streams map[string]string `toml:"streams"`
	// Pools are [[shaping.pool]] entries. None means one pool "default"
	// with one source that binds no address and uses the daemon hostname.
	Pools []EgressPool `toml:"pool"`
	// Warmup are [[shaping.warmup]] schedules referenced by sources.
	Warmup []WarmupSchedule `toml:"warmup"`
}

// ShapingRule limits traffic to the destinations it matches. A rule with
// Name "default" matches everything no other rule matches; its state is
// kept per destination domain. Other rules keep one shared state for every
// domain they match (MX rollup), per egress source and stream.
type ShapingRule struct {
	// Name identifies the rule (and its shared state).
	Name string `toml:"name"`
	// Domains match the recipient domain exactly ("gmail.com").
	Domains []string `toml:"domains"`
	// MXSuffixes match the MX host name by suffix (".google.com").
	MXSuffixes []string `toml:"mx_suffixes"`
	// ConnectionLimit is the most concurrent connections; 0 = unlimited.
	ConnectionLimit int `toml:"connection_limit"`
	// MaxDeliveriesPerConnection before the connection is closed; 0 = unlimited.
	MaxDeliveriesPerConnection int `toml:"max_deliveries_per_connection"`
	// MaxMessageRate such as "200/s" or "5000/h"; empty = unlimited.
	MaxMessageRate Rate `toml:"max_message_rate"`
	// MaxConnectionRate such as "100/min"; empty = unlimited.
	MaxConnectionRate Rate `toml:"max_connection_rate"`
	// IdleTimeout closes pooled connections unused this long; 0 = delivery's default.
	IdleTimeout Duration `toml:"idle_timeout"`
	// EnableTLS is "opportunistic" (default), "required" or "disabled".
	EnableTLS string `toml:"enable_tls"`
}

// AutomationRule acts on remote replies. Regex and Enhanced/Code are
// ANDed; at least one must be set.
type AutomationRule struct {
	// Rule names the shaping rule whose replies are watched; "" or "*"
	// watches every rule.
	Rule string `toml:"rule"`
	// Regex is matched against the reply as one line:
	// "<code> <enhanced> <text>" (e.g. "421 4.7.28 ... rate limited").
	Regex string `toml:"regex"`
	// Enhanced is an exact enhanced status code ("4.7.28").
	Enhanced string `toml:"enhanced"`
	// Code is an exact basic reply code (421).
	Code int `toml:"code"`
	// Action is "throttle", "suspend" or "bounce".
	Action string `toml:"action"`
	// Factor scales the rule's message and connection rates while a
	// throttle is active (0 < factor < 1). Default 0.5.
	Factor float64 `toml:"factor"`
	// Duration is how long the action lasts; it is extended by each
	// further matching reply.
	Duration Duration `toml:"duration"`
	// Threshold is how many matching replies within Window (per source,
	// stream and rule) start the action; 0 or 1 means the first one.
	Threshold int `toml:"threshold"`
	// Window for Threshold; default 1h.
	Window Duration `toml:"window"`
}

// EgressPool is a named set of weighted sources.
type EgressPool struct {
	Name    string         `toml:"name"`
	Sources []EgressSource `toml:"source"`
}

// EgressSource is one local address mail leaves from.
type EgressSource struct {
	// Name identifies the source in logs, metrics and shaping state.
	Name string `toml:"name"`
	// BindAddress is the local IP to bind; "" lets the kernel choose.
	BindAddress string `toml:"bind_address"`
	// EHLO is the name sent in EHLO; "" means the daemon hostname.
	EHLO string `toml:"ehlo"`
	// Weight is the share of new connections (default 1).
	Weight int `toml:"weight"`
	// Warmup names a [[shaping.warmup]] schedule; "" means no caps.
	Warmup string `toml:"warmup"`
	// WarmupStart is the schedule's day 1, "YYYY-MM-DD" (UTC).
	WarmupStart string `toml:"warmup_start"`
}

// WarmupSchedule caps how many messages a new source sends per UTC day
// to each rule: Caps["gmail"][0] on the start day, [1] the next day, and
// so on; after the list ends the rule is uncapped. The key "*" applies
// to rules not listed.
type WarmupSchedule struct {
	Name string           `toml:"name"`
	Caps map[string][]int `toml:"caps"`
}

// Rate is a count per period, written "200/s", "5000/h", "1/minute",
// "10/30s". The zero Rate means unlimited.
type Rate struct {
	// Count is events per Per.
	Count float64
	// Per is the period.
	Per time.Duration
}

var rateUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// ParseRate parses "N/unit" where N is a positive number and unit is
// s|sec|second, m|min|minute, h|hr|hour, d|day (plurals allowed) or a Go
// duration ("30s"). "" and "unlimited" give the zero Rate.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "unlimited") {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/unit such as 200/s", s)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive number", s)
	}
	unit = strings.ToLower(strings.TrimSpace(unit))
	per, ok := rateUnits[unit]
	if !ok {
		per, err = time.ParseDuration(unit)
		if err != nil {
			return Rate{}, fmt.Errorf("rate %q: unknown unit %q: %w", s, unit, err)
		}
		if per <= 0 {
			return Rate{}, fmt.Errorf("rate %q: period must be positive", s)
		}
	}
	return Rate{Count: n, Per: per}, nil
}

// Unlimited reports whether r is the zero Rate.
func (r Rate) Unlimited() bool { return r.Count == 0 || r.Per == 0 }

// PerSecond returns the rate in events per second (0 when unlimited).
func (r Rate) PerSecond() float64 {
	if r.Unlimited() {
		return 0
	}
	return r.Count / r.Per.Seconds()
}

// String formats r so that ParseRate reads it back.
func (r Rate) String() string {
	if r.Unlimited() {
		return ""
	}
	unit := ""
	switch r.Per {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "min"
	case time.Hour:
		unit = "h"
	case 24 * time.Hour:
		unit = "d"
	default:
		unit = r.Per.String()
	}
	return strconv.FormatFloat(r.Count, 'g', -1, 64) + "/" + unit
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// TLS modes accepted by ShapingRule.EnableTLS.
const (
	TLSOpportunistic = "opportunistic"
	TLSRequired      = "required"
	TLSDisabled      = "disabled"
)

// Automation actions accepted by AutomationRule.Action.
const (
	ActionThrottle = "throttle"
	ActionSuspend  = "suspend"
	ActionBounce   = "bounce"
)

func defaultShaping() ShapingConfig {
	return ShapingConfig{MaxWait: Duration{10 * time.Second}}
}

func (s *ShapingConfig) validate() error {
	if s.MaxWait.Duration < 0 {
		return errors.New("max_wait must not be negative")
	}
	return ValidateShaping(s)
}

// ValidateShaping checks a [shaping] section (or the shipped defaults
// file, which has the same schema) and normalises case in names, TLS modes
// and actions. Errors name the offending entry.
func ValidateShaping(s *ShapingConfig) error {
	names := map[string]bool{}
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.Name == "" {
			return fmt.Errorf("rule[%d]: name is required", i)
		}
		if names[r.Name] {
			return fmt.Errorf("rule[%d]: duplicate name %q", i, r.Name)
		}
		names[r.Name] = true
		if r.Name != "default" && len(r.Domains) == 0 && len(r.MXSuffixes) == 0 {
			return fmt.Errorf("rule %q: needs domains or mx_suffixes", r.Name)
		}
		for j, d := range r.Domains {
			r.Domains[j] = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		}
		for j, d := range r.MXSuffixes {
			d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
			if d == "" {
				return fmt.Errorf("rule %q: empty mx_suffix", r.Name)
			}
			r.MXSuffixes[j] = d
		}
		if r.ConnectionLimit < 0 || r.MaxDeliveriesPerConnection < 0 || r.IdleTimeout.Duration < 0 {
			return fmt.Errorf("rule %q: limits must not be negative", r.Name)
		}
		switch m := strings.ToLower(r.EnableTLS); m {
		case "":
			r.EnableTLS = TLSOpportunistic
		case TLSOpportunistic, TLSRequired, TLSDisabled:
			r.EnableTLS = m
		default:
			return fmt.Errorf("rule %q: enable_tls %q is not opportunistic, required or disabled", r.Name, r.EnableTLS)
		}
	}
	for i := range s.Automation {
		a := &s.Automation[i]
		if a.Regex == "" && a.Enhanced == "" && a.Code == 0 {
			return fmt.Errorf("automation[%d]: needs regex, enhanced or code", i)
		}
		if a.Regex != "" {
			if _, err := regexp.Compile(a.Regex); err != nil {
				return fmt.Errorf("automation[%d]: regex: %w", i, err)
			}
		}
		switch m := strings.ToLower(a.Action); m {
		case ActionThrottle:
			a.Action = m
			if a.Factor == 0 {
				a.Factor = 0.5
			}
			if !(a.Factor > 0 && a.Factor < 1) {
				return fmt.Errorf("automation[%d]: factor must be between 0 and 1", i)
			}
		case ActionSuspend, ActionBounce:
			a.Action = m
		default:
			return fmt.Errorf("automation[%d]: action %q is not throttle, suspend or bounce", i, a.Action)
		}
		if a.Duration.Duration <= 0 {
			return fmt.Errorf("automation[%d]: duration must be positive", i)
		}
		if a.Threshold < 0 || a.Threshold > 10000 || a.Window.Duration < 0 {
			return fmt.Errorf("automation[%d]: threshold must be 0..10000 and window not negative", i)
		}
		if a.Threshold > 1 && a.Window.Duration == 0 {
			a.Window.Duration = time.Hour
		}
	}
	warm := map[string]bool{}
	for i, w := range s.Warmup {
		if w.Name == "" || warm[w.Name] {
			return fmt.Errorf("warmup[%d]: name missing or duplicate", i)
		}
		warm[w.Name] = true
		for rule, caps := range w.Caps {
			for _, c := range caps {
				if c < 0 {
					return fmt.Errorf("warmup %q: caps for %q must not be negative", w.Name, rule)
				}
			}
		}
	}
	pools := map[string]bool{}
	sources := map[string]bool{}
	for i := range s.Pools {
		p := &s.Pools[i]
		if p.Name == "" || pools[p.Name] {
			return fmt.Errorf("pool[%d]: name missing or duplicate", i)
		}
		pools[p.Name] = true
		if len(p.Sources) == 0 {
			return fmt.Errorf("pool %q: needs at least one source", p.Name)
		}
		for j := range p.Sources {
			src := &p.Sources[j]
			if src.Name == "" || sources[src.Name] {
				return fmt.Errorf("pool %q source[%d]: name missing or used twice", p.Name, j)
			}
			sources[src.Name] = true
			if src.Weight < 0 {
				return fmt.Errorf("source %q: weight must not be negative", src.Name)
			}
			if src.Weight == 0 {
				src.Weight = 1
			}
			if src.Warmup != "" {
				if !warm[src.Warmup] {
					return fmt.Errorf("source %q: unknown warmup schedule %q", src.Name, src.Warmup)
				}
				if _, err := time.Parse(time.DateOnly, src.WarmupStart); err != nil {
					return fmt.Errorf("source %q: warmup_start %q must be YYYY-MM-DD: %w", src.Name, src.WarmupStart, err)
				}
			}
		}
	}
	for stream, pool := range s.Streams {
		if !pools[pool] && !(pool == "default" && len(s.Pools) == 0) {
			return fmt.Errorf("streams: %q maps to unknown pool %q", stream, pool)
		}
	}
	return nil
}
