package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestTransportToOwnListenerRefused(t *testing.T) {
	cases := []struct {
		name, smtp, bounce, relay string
		loop                      bool
	}{
		{"same literal", "127.0.0.1:2525", "", "127.0.0.1:2525", true},
		{"wildcard listener, loopback relay", "0.0.0.0:2525", "", "127.0.0.1:2525", true},
		{"wildcard listener, other loopback", "0.0.0.0:2525", "", "127.0.0.9:2525", true},
		{"empty-host listener", ":2525", "", "localhost:2525", true},
		{"v6 wildcard listener, v4 relay", "[::]:2525", "", "127.0.0.1:2525", true},
		{"loopback listener, wildcard relay", "127.0.0.1:2525", "", "0.0.0.0:2525", true},
		{"loopback listener, localhost relay", "127.0.0.1:2525", "", "localhost:2525", true},
		{"v6 loopback listener, localhost relay", "[::1]:2525", "", "LOCALHOST.:2525", true},
		{"mapped v4 relay", "127.0.0.1:2525", "", "[::ffff:127.0.0.1]:2525", true},
		{"own hostname, wildcard listener", "0.0.0.0:2525", "", "petrel.test:2525", true},
		{"bounce listener", "127.0.0.1:2525", "127.0.0.1:2600", "127.0.0.1:2600", true},
		{"bounce wildcard", "127.0.0.1:2525", "0.0.0.0:2600", "[::1]:2600", true},
		{"other port", "0.0.0.0:2525", "", "127.0.0.1:25", false},
		{"other loopback address", "127.0.0.1:2525", "", "127.0.0.2:2525", false},
		{"localhost vs 127.0.0.5", "127.0.0.5:2525", "", "localhost:2525", false},
		{"remote relay", "0.0.0.0:2525", "", "10.0.0.25:2525", false},
		{"remote name", "127.0.0.1:2525", "", "relay.example.net:2525", false},
		{"own hostname, loopback-only listener", "127.0.0.1:2525", "", "petrel.test:2525", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			toml := fmt.Sprintf("hostname = \"petrel.test\"\n[smtp]\nlisten = %q\n", tc.smtp)
			if tc.bounce != "" {
				toml += fmt.Sprintf("[bounce]\ndomain = \"bounce.test\"\nlisten = %q\n", tc.bounce)
			}
			toml += fmt.Sprintf("[[transport]]\ndomain = \"*\"\nrelay = %q\n", tc.relay)
			_, err := Parse("t.toml", []byte(toml))
			if tc.loop {
				if err == nil || !strings.Contains(err.Error(), "loop back into Petrel") {
					t.Fatalf("relay %s with smtp %s / bounce %s: got %v, want a loop error", tc.relay, tc.smtp, tc.bounce, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("relay %s with smtp %s / bounce %s: %v", tc.relay, tc.smtp, tc.bounce, err)
			}
		})
	}
}
