package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/config"
)

// TestLoggerOneComponent: petreld's JSON logger writes "component" once,
// the innermost name winning, however the packages nest it.
func TestLoggerOneComponent(t *testing.T) {
	tests := []struct {
		name string
		log  func(*bytes.Buffer)
		want string // the component, "" for none
	}{
		{"With then record attr (queue's pebble logger)", func(b *bytes.Buffer) {
			newLogger(config.LogConfig{Format: "json"}, b).With("component", "queue").Info("m", "component", "pebble")
		}, "pebble"},
		{"With twice (ingest under the daemon's name)", func(b *bytes.Buffer) {
			newLogger(config.LogConfig{Format: "json"}, b).With("component", "smtp").With("x", 1).With("component", "ingest.smtp").Info("m")
		}, "ingest.smtp"},
		{"one With", func(b *bytes.Buffer) {
			newLogger(config.LogConfig{Format: "json"}, b).With("component", "delivery").Info("m", "k", "v")
		}, "delivery"},
		{"group keeps the outer component at top level", func(b *bytes.Buffer) {
			newLogger(config.LogConfig{Format: "json"}, b).With("component", "events").WithGroup("g").Info("m", "component", "inner")
		}, "events"},
		{"none", func(b *bytes.Buffer) {
			newLogger(config.LogConfig{Format: "json"}, b).Info("m")
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tt.log(&b)
			n, got := countKey(t, strings.TrimSpace(b.String()), "component")
			want := 1
			if tt.want == "" {
				want = 0
			}
			if n != want || got != tt.want {
				t.Fatalf("line %s: %d component keys, last %q; want %d, %q", b.String(), n, got, want, tt.want)
			}
		})
	}
}
