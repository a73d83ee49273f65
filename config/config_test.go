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
	if s := c.SMTP; s.HardErrorLimit != 20 || s.SoftErrorLimit != 10 || s.ErrorSleep.Duration != time.Second ||
		s.AuthFailureBurst != 10 || s.AuthFailureInterval.Duration != time.Minute || s.Postmaster != "" {
		t.Fatalf("smtp error/auth limit defaults: %+v", s)
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
		{"zero hard error limit", "[smtp]\nhard_error_limit = 0\n", "hard_error_limit"},
		{"negative error sleep", "[smtp]\nerror_sleep = \"-1s\"\n", "error_sleep"},
		{"zero auth burst", "[smtp]\nauth_failure_burst = 0\n", "auth_failure_burst"},
		{"bad postmaster", "[smtp]\npostmaster = \"Ops <ops@example.com>\"\n", "postmaster"},
		{"postmaster without domain", "[smtp]\npostmaster = \"root\"\n", "postmaster"},
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

func TestBounceAndWebhookKeys(t *testing.T) {
	good := `
[bounce]
domain = "Bounce.Example.COM."
secret = "s"
listen = "127.0.0.1:2526"
fbl_addresses = ["fbl@example.com"]
soft_bounce_limit = 3
soft_bounce_window = "48h"
complaint_rate_alarm = 0.001
bounce_rate_alarm = 0.1
alarm_window = "1h"
alarm_min_sample = 10
pause_marketing_on_alarm = true
marketing_stream = "bulk"

[[webhooks]]
url = "https://hooks.example.com/petrel"
secret = "k"
events = ["bounced", "complained"]
`
	c, err := Parse("t.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bounce
	if b.Domain != "bounce.example.com" || b.Listen != "127.0.0.1:2526" || b.SoftBounceLimit != 3 ||
		b.SoftBounceWindow.Duration != 48*time.Hour || b.ComplaintRateAlarm != 0.001 || b.BounceRateAlarm != 0.1 ||
		b.AlarmWindow.Duration != time.Hour || b.AlarmMinSample != 10 || !b.PauseMarketingOnAlarm || b.MarketingStream != "bulk" {
		t.Fatalf("bounce = %+v", b)
	}
	if w := c.Webhooks[0]; w.Timeout.Duration != DefaultWebhookTimeout || w.MaxBackoff.Duration != DefaultWebhookMaxBackoff {
		t.Fatalf("webhook defaults not filled: %+v", w)
	}
	d := Default().Bounce
	if d.SoftBounceLimit != 5 || d.SoftBounceWindow.Duration != 72*time.Hour || d.ComplaintRateAlarm != 0.003 ||
		d.BounceRateAlarm != 0.05 || d.Listen != "" || d.PauseMarketingOnAlarm || d.MarketingStream != "marketing" {
		t.Fatalf("bounce defaults = %+v", d)
	}

	bad := []struct{ name, toml, want string }{
		{"listen not hostport", "[bounce]\ndomain = \"b.test\"\nsecret = \"s\"\nlisten = \"2526\"\n", "listen"},
		{"listen without domain", "[bounce]\nlisten = \"127.0.0.1:1\"\n", "needs domain or fbl_addresses"},
		{"listen without secret", "[bounce]\ndomain = \"b.test\"\nlisten = \"127.0.0.1:1\"\n", "needs secret"},
		{"bad fbl", "[bounce]\nfbl_addresses = [\"nobody\"]\n", "fbl_addresses[0]"},
		{"negative soft limit", "[bounce]\nsoft_bounce_limit = -1\n", "soft_bounce_limit"},
		{"zero soft window", "[bounce]\nsoft_bounce_window = \"0s\"\n", "soft_bounce_window"},
		{"rate over one", "[bounce]\ncomplaint_rate_alarm = 3.0\n", "complaint_rate_alarm"},
		{"zero bounce rate", "[bounce]\nbounce_rate_alarm = 0.0\n", "bounce_rate_alarm"},
		{"tiny alarm window", "[bounce]\nalarm_window = \"10s\"\n", "alarm_window"},
		{"zero sample", "[bounce]\nalarm_min_sample = 0\n", "alarm_min_sample"},
		{"empty marketing", "[bounce]\nmarketing_stream = \"\"\n", "marketing_stream"},
		{"webhook no url", "[[webhooks]]\nsecret = \"k\"\n", "webhooks[0]: url is required"},
		{"webhook relative url", "[[webhooks]]\nurl = \"/hook\"\nsecret = \"k\"\n", "absolute http(s) URL"},
		{"webhook no secret", "[[webhooks]]\nurl = \"http://h/x\"\n", "secret is required"},
		{"webhook bad event", "[[webhooks]]\nurl = \"http://h/x\"\nsecret = \"k\"\nevents = [\"a,b\"]\n", "events[0]"},
		{"webhook tiny backoff", "[[webhooks]]\nurl = \"http://h/x\"\nsecret = \"k\"\nmax_backoff = \"1ms\"\n", "max_backoff"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}
