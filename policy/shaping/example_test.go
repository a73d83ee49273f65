package shaping

import (
	"testing"

	"github.com/petrel-mta/petrel/config"
)

// TestExampleConfigCompiles: the [shaping] section documented in
// petrel.example.toml compiles over the shipped defaults.
func TestExampleConfigCompiles(t *testing.T) {
	cfg, err := config.Load("../../petrel.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg.Shaping, cfg.Hostname, nil, nil)
	if err != nil {
		t.Fatalf("example [shaping] does not compile: %v", err)
	}
	if err := s.Reload(cfg.Shaping); err != nil {
		t.Fatalf("reload of the same rules: %v", err)
	}
}
