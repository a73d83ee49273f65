package config

import (
	"strings"
	"testing"
)

func TestSendingSection(t *testing.T) {
	tests := []struct {
		name, toml string
		errHas     string
		check      func(*Config) bool
	}{
		{"defaults", "", "", func(c *Config) bool {
			return c.Sending.DomainCheckInterval.Hours() == 1 && len(c.Sending.ListUnsubscribeStreams) == 1 && c.Sending.ListUnsubscribeStreams[0] == "marketing"
		}},
		{"full", `
[sending]
dkim_default_domain = "example.com"
spf_ips = ["192.0.2.1", "2001:db8::/32"]
spf_include = "_spf.example.net"
dmarc_report = "dmarc@example.com"
domain_check_interval = "15m"
unsubscribe_url = "https://mail.example.com/"
unsubscribe_domain = "bounce.example.com"
list_unsubscribe_streams = ["marketing", "newsletter"]
[[sending.dkim]]
domain = "example.com"
selector = "s1"
key_file = "/etc/petrel/s1.key"
algorithm = "ed25519"
`, "", func(c *Config) bool {
			return c.Sending.UnsubscribeURL == "https://mail.example.com" && len(c.Sending.DKIM) == 1 && c.Sending.DomainCheckInterval.Minutes() == 15
		}},
		{"dkim without key", "[[sending.dkim]]\ndomain = \"a.test\"\nselector = \"s1\"\n", "key_file", nil},
		{"dkim bad algo", "[[sending.dkim]]\ndomain = \"a.test\"\nselector = \"s1\"\nkey_file = \"k\"\nalgorithm = \"dsa\"\n", "algorithm", nil},
		{"bad ip", "[sending]\nspf_ips = [\"mail.example.com\"]\n", "spf_ips", nil},
		{"relative url", "[sending]\nunsubscribe_url = \"/unsub\"\n", "unsubscribe_url", nil},
		{"unknown key", "[sending]\nunsubscribe_ulr = \"https://x\"\n", "unknown key", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(tc.toml))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("parsed %+v", c.Sending)
			}
		})
	}
}
