package config

// This file holds the sections owned by later subsystems. Each grows with
// its package: bounce (BounceConfig), verify
// (VerifyConfig).

// BounceConfig is the [bounce] section: VERP return paths and the inbound
// listener for the bounce domain.
type BounceConfig struct {
	// Domain is the bounce domain; empty disables VERP.
	Domain string `toml:"domain"`
	// Secret signs VERP tokens (HMAC-SHA256).
	Secret string `toml:"secret"`
}

func defaultBounce() BounceConfig { return BounceConfig{} }

func (b *BounceConfig) validate() error { return nil }

// VerifyConfig lives in verify.go.
