package config

import (
	"strings"
	"testing"
)

// TestTrackingSection: [tracking] and [[tracking.domain]] parse, and bad
// values are refused with the field named.
func TestTrackingSection(t *testing.T) {
	c, err := Parse("t.toml", []byte("[tracking]\nhttps_listen = \"127.0.0.1:8443\"\nacme_directory = \"https://127.0.0.1:14000/dir\"\n"+
		"[[tracking.domain]]\nhost = \"track.shop.test\"\nsending_domain = \"shop.test\"\nhttps = true\n"))
	if err != nil || c.Tracking.HTTPSListen != "127.0.0.1:8443" || len(c.Tracking.Domains) != 1 || !c.Tracking.Domains[0].HTTPS {
		t.Fatalf("parse: %v %+v", err, c.Tracking)
	}
	for _, bad := range []struct{ toml, want string }{
		{"[tracking]\nhttps_listen = \"nope\"\n", "https_listen"},
		{"[tracking]\nacme_directory = \"http://x/dir\"\n", "acme_directory"},
		{"[[tracking.domain]]\nhost = \"t.shop.test\"\n", "sending_domain"},
		{"[[tracking.domain]]\nhost = \"t.shop.test\"\nsending_domain = \"shop.test\"\nhttps = true\ncert_file = \"/c.pem\"\n", "key_file"},
		{"[[tracking.domain]]\nhost = \"t.shop.test\"\nsending_domain = \"shop.test\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n", "https"},
		{"[tracking]\ncert_expiry_warning = \"-1h\"\n", "cert_expiry_warning"},
	} {
		if _, err := Parse("t.toml", []byte(bad.toml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error naming %s", bad.toml, err, bad.want)
		}
	}
}
