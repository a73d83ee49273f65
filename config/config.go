// Package config owns Petrel's configuration: the TOML schema, the embedded
// defaults a newcomer runs on, and validation. Errors name the file and line.
//
// Config never performs I/O beyond reading the file it is given. Each
// subsystem's section lives in its own file (smtp.go, delivery.go, ...) so the
// schema grows one section at a time.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole daemon configuration. The zero value is not useful;
// start from Default or Load.
type Config struct {
	// DataDir holds the Pebble spool and every other persistent file.
	DataDir string `toml:"data_dir"`
	// Hostname is the name Petrel uses in EHLO, Received headers and
	// Message-IDs. Defaults to the machine's hostname.
	Hostname string `toml:"hostname"`
	// RequireDomainStatus refuses mail whose From domain is below this
	// sending-domain status: "none", "usable" or "verified".
	RequireDomainStatus string `toml:"require_domain_status"`

	Log       LogConfig      `toml:"log"`
	SMTP      SMTPConfig     `toml:"smtp"`
	HTTP      HTTPConfig     `toml:"http"`
	Metrics   MetricsConfig  `toml:"metrics"`
	DNS       DNSConfig      `toml:"dns"`
	Delivery  DeliveryConfig `toml:"delivery"`
	Queue     QueueConfig    `toml:"queue"`
	Transport []Transport    `toml:"transport"`
	Bounce    BounceConfig   `toml:"bounce"`
	Webhooks  []Webhook      `toml:"webhooks"`
	Events    EventsConfig   `toml:"events"`
	Shaping   ShapingConfig  `toml:"shaping"`
	Sending   SendingConfig  `toml:"sending"`
	Verify    VerifyConfig   `toml:"verify"`
	// Reputation is blocklist monitoring (config/reputation.go).
	Reputation ReputationConfig `toml:"reputation"`
	ESP        ESPConfig        `toml:"esp"`
	Tracking   TrackingConfig   `toml:"tracking"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	// Level is one of debug, info, warn, error.
	Level string `toml:"level"`
	// Format is "text" or "json".
	Format string `toml:"format"`
}

// DNSConfig selects the resolver used for MX/A/AAAA/TXT lookups.
type DNSConfig struct {
	// Resolver is "host:port" of a recursive resolver. Empty means the
	// first nameserver in /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// Timeout bounds one DNS exchange.
	Timeout Duration `toml:"timeout"`
}

// Transport routes mail for Domain (or "*" for everything) to a fixed
// Relay "host:port" instead of the domain's MX hosts, like Postfix's
// transport maps and relayhost.
type Transport struct {
	Domain string `toml:"domain"`
	Relay  string `toml:"relay"`
}

// EventsConfig controls the event log kept in the spool.
type EventsConfig struct {
	// Retention is how long event records are kept.
	Retention Duration `toml:"retention"`
}

// Webhook posts events to URL, signed with Secret (validated in
// sections.go).
type Webhook struct {
	// Name labels the webhook in metrics and stats; empty means its URL's host.
	Name string `toml:"name"`
	// URL receives one POST per event.
	URL string `toml:"url"`
	// Events are the event types sent; empty means every type.
	Events []string `toml:"events"`
	// Secret keys the HMAC-SHA256 signature header.
	Secret string `toml:"secret"`
	// Timeout bounds one POST (default 10s).
	Timeout Duration `toml:"timeout"`
	// MaxBackoff caps the retry delay after failures (default 10m).
	MaxBackoff Duration `toml:"max_backoff"`
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("90s", "5m", "120h").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the embedded defaults: data in ./petrel-data, SMTP
// submission on 127.0.0.1:2525, HTTP API on 127.0.0.1:8025, relay allowed
// from loopback only.
func Default() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Config{
		DataDir:             "./petrel-data",
		Hostname:            host,
		RequireDomainStatus: "none",
		Log:                 LogConfig{Level: "info", Format: "text"},
		SMTP:                defaultSMTP(),
		HTTP:                HTTPConfig{Listen: "127.0.0.1:8025", CampaignStream: "marketing", HTTPLimits: defaultHTTPLimits()},
		Metrics:             MetricsConfig{Access: MetricsLoopback},
		DNS:                 DNSConfig{Timeout: Duration{5 * time.Second}},
		Delivery:            defaultDelivery(),
		Queue:               defaultQueue(),
		Bounce:              defaultBounce(),
		Events:              EventsConfig{Retention: Duration{7 * 24 * time.Hour}},
		Shaping:             defaultShaping(),
		Sending:             defaultSending(),
		Verify:              defaultVerify(),
		Reputation:          defaultReputation(),
		ESP:                 defaultESP(),
	}
}

// Load reads the TOML file at path over the embedded defaults and validates
// the result. Unknown keys are an error naming the key and its line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config: %s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			msgs = append(msgs, fmt.Sprintf("%s:%d: unknown key %q", name, keyLine(data, k), k.String()))
		}
		return nil, fmt.Errorf("config: %s", strings.Join(msgs, "; "))
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return c, nil
}

// keyLine finds the line on which the last component of key is assigned
// inside the table named by the rest of key. It returns 0 when not found.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	last := key[len(key)-1]
	table := strings.Join(key[:len(key)-1], ".")
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	fallback := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(t, "[") {
			name := strings.Trim(t, "[] ")
			if i := strings.Index(name, "#"); i >= 0 {
				name = strings.TrimSpace(strings.Trim(name[:i], "[] "))
			}
			cur = name
			if cur == strings.Join(key, ".") {
				return line // the unknown key is a table itself
			}
			continue
		}
		eq := strings.Index(t, "=")
		if eq < 0 {
			continue
		}
		k := strings.Trim(strings.TrimSpace(t[:eq]), `"'`)
		if k == last {
			if cur == table {
				return line
			}
			if fallback == 0 {
				fallback = line
			}
		}
	}
	return fallback
}

// Validate checks cross-field rules and fills derived defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data_dir must not be empty")
	}
	switch c.RequireDomainStatus {
	case "", "none":
		c.RequireDomainStatus = "none"
	case "usable", "verified":
	default:
		return fmt.Errorf("require_domain_status: %q is not one of none, usable, verified", c.RequireDomainStatus)
	}
	if err := c.SMTP.validate(); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := c.HTTP.validate(); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	if err := c.Metrics.validate(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := c.Delivery.validate(); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	for i, t := range c.Transport {
		if t.Domain == "" || t.Relay == "" {
			return fmt.Errorf("transport[%d]: domain and relay are required", i)
		}
		if _, _, err := net.SplitHostPort(t.Relay); err != nil {
			return fmt.Errorf("transport[%d]: relay %q must be host:port: %w", i, t.Relay, err)
		}
	}
	if err := c.checkTransportLoops(); err != nil {
		return err
	}
	for i := range c.Webhooks {
		if err := c.Webhooks[i].validate(); err != nil {
			return fmt.Errorf("webhooks[%d]: %w", i, err)
		}
	}
	if err := c.Bounce.validate(); err != nil {
		return fmt.Errorf("bounce: %w", err)
	}
	if err := c.Shaping.validate(); err != nil {
		return fmt.Errorf("shaping: %w", err)
	}
	if err := c.Sending.validate(); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if err := c.Reputation.validate(); err != nil {
		return err
	}
	if err := c.Verify.validate(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := c.ESP.validate(); err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	if err := c.Tracking.validate(); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	return nil
}

// TransportFor returns the relay for domain from the [[transport]] table:
// an exact domain match wins over "*". ok is false when mail for domain
// goes to its MX hosts.
func (c *Config) TransportFor(domain string) (relay string, ok bool) {
	domain = strings.ToLower(domain)
	star := ""
	for _, t := range c.Transport {
		d := strings.ToLower(t.Domain)
		if d == domain {
			return t.Relay, true
		}
		if d == "*" {
			star = t.Relay
		}
	}
	return star, star != ""
}
