package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"strings"
	"time"
)

// SMTPConfig is the [smtp] submission listener.
type SMTPConfig struct {
	// Listen is the submission listener address.
	Listen string `toml:"listen"`
	// Mynetworks are CIDR prefixes (or bare addresses) allowed to relay
	// without AUTH. Default: loopback only.
	Mynetworks []string `toml:"mynetworks"`
	// MaxMessageSize in bytes; larger messages get 552 5.3.4.
	MaxMessageSize int64 `toml:"max_message_size"`
	// MaxRecipients per transaction; more get 452 4.5.3.
	MaxRecipients int `toml:"max_recipients"`
	// TLSCert and TLSKey are PEM files; when both are set STARTTLS is offered.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// LocalDomains are domains Petrel accepts mail for from anyone (no
	// relay needed). Empty by default.
	LocalDomains []string `toml:"local_domains"`
	// ReadTimeout and WriteTimeout bound each client command.
	ReadTimeout  Duration `toml:"read_timeout"`
	WriteTimeout Duration `toml:"write_timeout"`
	// MaxLineLength of a command or data line (RFC 5321 says 1000 incl. CRLF).
	MaxLineLength int `toml:"max_line_length"`
	// HopCountLimit is the most Received plus Delivered-To header fields
	// a message may have when it enters (SMTP, HTTP, DSNs); more are a
	// mail loop: 554 5.4.6 / HTTP 422 (Postfix's hopcount_limit).
	HopCountLimit int `toml:"hop_count_limit"`
	// Users may AUTH PLAIN/LOGIN; AUTH is refused before STARTTLS unless the
	// listener is on loopback.
	Users []SMTPUser `toml:"users"`

	// HardErrorLimit closes a session with 421 4.7.0 at this many errors
	// (failed AUTH, refused MAIL FROM or RCPT TO) without an accepted
	// message, like Postfix's smtpd_hard_error_limit. Default 20.
	HardErrorLimit int `toml:"hard_error_limit"`
	// SoftErrorLimit: each error beyond this many is answered after a
	// delay growing by ErrorSleep (Postfix's smtpd_soft_error_limit).
	// Default 10.
	SoftErrorLimit int `toml:"soft_error_limit"`
	// ErrorSleep is the delay step: the n-th failed AUTH of a session and
	// the n-th error beyond SoftErrorLimit are answered after n times
	// ErrorSleep, at most 10 times. Default 1s; 0 disables the delay.
	ErrorSleep Duration `toml:"error_sleep"`
	// AuthFailureBurst failed AUTH attempts are allowed per client address
	// (an IPv6 client: its /64) across sessions; then AUTH from it is
	// answered 421 4.7.0 and the connection closed, until one more attempt
	// is earned every AuthFailureInterval. Default 10 and 1m.
	AuthFailureBurst    int      `toml:"auth_failure_burst"`
	AuthFailureInterval Duration `toml:"auth_failure_interval"`
	// Postmaster receives mail sent to RCPT TO:<postmaster> without a
	// domain (RFC 5321 section 4.5.1), from anyone. Default
	// "postmaster@" + the top-level hostname.
	Postmaster string `toml:"postmaster"`
}

// SMTPUser is one [[smtp.users]] entry.
type SMTPUser struct {
	Name string `toml:"name"`
	// PasswordHash is a bcrypt ("$2a$...", "$2b$...") or argon2id
	// ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") hash.
	PasswordHash string `toml:"password_hash"`
	// Stream the user's mail belongs to (default "transactional").
	Stream string `toml:"stream"`
}

func defaultSMTP() SMTPConfig {
	return SMTPConfig{
		Listen:         "127.0.0.1:2525",
		Mynetworks:     []string{"127.0.0.0/8", "::1/128"},
		MaxMessageSize: 25 << 20,
		MaxRecipients:  1000,
		ReadTimeout:    Duration{5 * 60e9},
		WriteTimeout:   Duration{5 * 60e9},
		MaxLineLength:  2000,

		HardErrorLimit:      20,
		SoftErrorLimit:      10,
		ErrorSleep:          Duration{time.Second},
		AuthFailureBurst:    10,
		AuthFailureInterval: Duration{time.Minute},
		HopCountLimit:       50,
	}
}

func (s *SMTPConfig) validate() error {
	if s.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			return fmt.Errorf("listen %q: %w", s.Listen, err)
		}
	}
	if _, err := s.Networks(); err != nil {
		return err
	}
	if s.MaxMessageSize <= 0 {
		return errors.New("max_message_size must be positive")
	}
	if s.MaxRecipients <= 0 {
		return errors.New("max_recipients must be positive")
	}
	if s.HopCountLimit <= 0 {
		return errors.New("hop_count_limit must be positive")
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return errors.New("tls_cert and tls_key must be set together")
	}
	if s.HardErrorLimit < 1 {
		return errors.New("hard_error_limit must be at least 1")
	}
	if s.SoftErrorLimit < 0 || s.ErrorSleep.Duration < 0 {
		return errors.New("soft_error_limit and error_sleep must not be negative")
	}
	if s.AuthFailureBurst < 1 || s.AuthFailureInterval.Duration <= 0 {
		return errors.New("auth_failure_burst must be at least 1 and auth_failure_interval positive")
	}
	if p := s.Postmaster; p != "" {
		if a, err := mail.ParseAddress(p); err != nil || a.Address != p || a.Name != "" {
			return fmt.Errorf("postmaster %q: not a plain address (local@domain)", p)
		}
	}
	for i, u := range s.Users {
		if u.Name == "" || u.PasswordHash == "" {
			return fmt.Errorf("users[%d]: name and password_hash are required", i)
		}
		if !strings.HasPrefix(u.PasswordHash, "$2") && !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			return fmt.Errorf("users[%d] (%s): password_hash must be bcrypt or argon2id", i, u.Name)
		}
	}
	return nil
}

// Networks parses Mynetworks into prefixes.
func (s *SMTPConfig) Networks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range s.Mynetworks {
		if strings.Contains(n, "/") {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				return nil, fmt.Errorf("mynetworks %q: %w", n, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(n)
		if err != nil {
			return nil, fmt.Errorf("mynetworks %q: %w", n, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// HTTPConfig is the [http] API listener.
type HTTPConfig struct {
	Listen  string   `toml:"listen"`
	APIKeys []APIKey `toml:"api_keys"`
	// CampaignStream is the stream of injected mail that names a campaign
	// and no stream of its own (request field or X-Petrel-Stream); ""
	// keeps the API key's stream. Default "marketing".
	CampaignStream string `toml:"campaign_stream"`
	HTTPLimits
}

// APIKey is one [[http.api_keys]] entry: a bearer token.
type APIKey struct {
	Name string `toml:"name"`
	Key  string `toml:"key"`
	// Stream the key's mail belongs to (default "transactional").
	Stream string `toml:"stream"`
}

func (h *HTTPConfig) validate() error {
	if h.Listen != "" {
		if _, _, err := net.SplitHostPort(h.Listen); err != nil {
			return fmt.Errorf("listen %q: %w", h.Listen, err)
		}
	}
	if err := h.HTTPLimits.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, k := range h.APIKeys {
		if k.Key == "" {
			return fmt.Errorf("api_keys[%d]: key is required", i)
		}
		if seen[k.Key] {
			return fmt.Errorf("api_keys[%d] (%s): duplicate key", i, k.Name)
		}
		seen[k.Key] = true
	}
	return nil
}
