package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "./petrel-data" || c.SMTP.Listen != "127.0.0.1:2525" || c.HTTP.Listen != "127.0.0.1:8025" {
		t.Fatalf("embedded defaults changed: %+v", c)
	}
	nets, _ := c.SMTP.Networks()
	if len(nets) != 2 || !nets[0].Addr().IsLoopback() {
		t.Fatalf("mynetworks default %v", nets)
	}
	if c.Delivery.SMTPPort != 25 || c.Delivery.MaxQueueLifetime.Duration != 120*time.Hour {
		t.Fatalf("delivery defaults %+v", c.Delivery)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../petrel.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.RequireDomainStatus != "usable" {
		t.Errorf("example must set require_domain_status = usable, got %q", c.RequireDomainStatus)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, toml, want string
	}{
		{"unknown top key", "data_dir = \"x\"\nbogus = 1\n", `t.toml:2: unknown key "bogus"`},
		{"unknown nested key", "[smtp]\nlisten = \"127.0.0.1:1\"\n\n[delivery]\nsmtp_prt = 25\n", `t.toml:5: unknown key "delivery.smtp_prt"`},
		{"unknown in array table", "[[transport]]\ndomain = \"a\"\nrelay = \"h:1\"\nrelayy = \"x\"\n", `t.toml:4: unknown key "transport.relayy"`},
		{"syntax error", "data_dir = \"x\"\nhostname = = 3\n", "t.toml:2:"},
		{"bad duration", "[delivery]\nmax_queue_lifetime = \"5 days\"\n", "invalid duration"},
		{"bad relay", "[[transport]]\ndomain = \"*\"\nrelay = \"nohostport\"\n", "must be host:port"},
		{"bad network", "[smtp]\nmynetworks = [\"10.0.0.0/33\"]\n", "mynetworks"},
		{"bad status", "require_domain_status = \"maybe\"\n", "require_domain_status"},
		{"bad hash", "[[smtp.users]]\nname = \"u\"\npassword_hash = \"plain\"\n", "bcrypt or argon2id"},
		{"empty retry", "[delivery]\nretry_schedule = []\n", "retry_schedule"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseOverridesDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(`
data_dir = "/tmp/p"
[delivery]
smtp_port = 2526
retry_schedule = ["1s", "2s"]
max_queue_lifetime = "90s"
[[transport]]
domain = "*"
relay = "127.0.0.1:2600"
[[transport]]
domain = "Special.test"
relay = "127.0.0.1:2700"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Delivery.SMTPPort != 2526 || c.Delivery.MaxQueueLifetime.Duration != 90*time.Second {
		t.Fatalf("%+v", c.Delivery)
	}
	if r := c.Delivery.Retries(); len(r) != 2 || r[1] != 2*time.Second {
		t.Fatalf("retries %v", r)
	}
	if c.SMTP.Listen != "127.0.0.1:2525" {
		t.Fatalf("untouched default lost: %q", c.SMTP.Listen)
	}
	for _, tc := range []struct{ domain, relay string }{{"special.test", "127.0.0.1:2700"}, {"other.test", "127.0.0.1:2600"}} {
		if r, ok := c.TransportFor(tc.domain); !ok || r != tc.relay {
			t.Errorf("TransportFor(%s) = %q %v, want %q", tc.domain, r, ok, tc.relay)
		}
	}
}
