package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		perSec  float64
		wantErr bool
	}{
		{in: "200/s", want: Rate{200, time.Second}, perSec: 200},
		{in: "5000/h", want: Rate{5000, time.Hour}, perSec: 5000.0 / 3600},
		{in: "1/minute", want: Rate{1, time.Minute}, perSec: 1.0 / 60},
		{in: " 100 / min ", want: Rate{100, time.Minute}, perSec: 100.0 / 60},
		{in: "10/30s", want: Rate{10, 30 * time.Second}, perSec: 10.0 / 30},
		{in: "2.5/sec", want: Rate{2.5, time.Second}, perSec: 2.5},
		{in: "86400/day", want: Rate{86400, 24 * time.Hour}, perSec: 1},
		{in: "3/HR", want: Rate{3, time.Hour}, perSec: 3.0 / 3600},
		{in: "", want: Rate{}},
		{in: "unlimited", want: Rate{}},
		{in: "200", wantErr: true},
		{in: "/s", wantErr: true},
		{in: "0/s", wantErr: true},
		{in: "-1/s", wantErr: true},
		{in: "NaN/s", wantErr: true},
		{in: "Inf/s", wantErr: true},
		{in: "5/fortnight", wantErr: true},
		{in: "5/-1s", wantErr: true},
		{in: "5/0s", wantErr: true},
		{in: "5/s/s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %+v, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRate(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if ps := got.PerSecond(); ps < tt.perSec*0.999999 || ps > tt.perSec*1.000001 {
				t.Fatalf("PerSecond = %v, want %v", ps, tt.perSec)
			}
			back, err := ParseRate(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip %q -> %q -> %+v, %v", tt.in, got.String(), back, err)
			}
		})
	}
}

// FuzzParseRate checks the rate parser never panics and that whatever it
// accepts is positive and survives a String round trip.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"200/s", "5000/h", "1/minute", "10/30s", "", "unlimited", "1e308/ns", "0x10/s", "1/1h2m", "5/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.Unlimited() {
			return
		}
		if !(r.Count > 0) || r.Per <= 0 {
			t.Fatalf("ParseRate(%q) accepted %+v", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil {
			t.Fatalf("ParseRate(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if back != r {
			t.Fatalf("round trip %q: %+v != %+v", s, back, r)
		}
	})
}

func TestShapingSection(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // substring; "" = valid
	}{
		{name: "empty", toml: ``},
		{name: "full", toml: `
[shaping]
max_wait = "5s"
streams = { transactional = "tx", marketing = "mkt" }
[[shaping.rule]]
name = "bigmail"
mx_suffixes = [".BigMail.test."]
connection_limit = 3
max_deliveries_per_connection = 20
max_message_rate = "500/s"
max_connection_rate = "10/s"
idle_timeout = "5s"
enable_tls = "Required"
[[shaping.automation]]
rule = "bigmail"
regex = '4\.7\.28'
action = "Throttle"
duration = "300ms"
threshold = 2
[[shaping.pool]]
name = "tx"
[[shaping.pool.source]]
name = "tx1"
bind_address = "127.0.0.2"
[[shaping.pool]]
name = "mkt"
[[shaping.pool.source]]
name = "mkt1"
weight = 3
warmup = "new"
warmup_start = "2026-01-02"
[[shaping.warmup]]
name = "new"
caps = { bigmail = [50, 100], "*" = [1000] }
`},
		{name: "bad rate", toml: "[[shaping.rule]]\nname = \"x\"\ndomains = [\"a.test\"]\nmax_message_rate = \"fast\"\n", wantErr: ":4:"},
		{name: "bad tls", toml: "[[shaping.rule]]\nname = \"x\"\ndomains = [\"a.test\"]\nenable_tls = \"maybe\"\n", wantErr: "enable_tls"},
		{name: "rule without match", toml: "[[shaping.rule]]\nname = \"x\"\n", wantErr: "needs domains"},
		{name: "duplicate rule", toml: "[[shaping.rule]]\nname = \"default\"\n[[shaping.rule]]\nname = \"default\"\n", wantErr: "duplicate"},
		{name: "bad regex", toml: "[[shaping.automation]]\nregex = \"(\"\naction = \"suspend\"\nduration = \"1m\"\n", wantErr: "regex"},
		{name: "bad action", toml: "[[shaping.automation]]\ncode = 421\naction = \"panic\"\nduration = \"1m\"\n", wantErr: "action"},
		{name: "bad factor", toml: "[[shaping.automation]]\ncode = 421\naction = \"throttle\"\nfactor = 1.5\nduration = \"1m\"\n", wantErr: "factor"},
		{name: "no duration", toml: "[[shaping.automation]]\ncode = 421\naction = \"suspend\"\n", wantErr: "duration"},
		{name: "bad threshold", toml: "[[shaping.automation]]\ncode = 421\naction = \"suspend\"\nduration = \"1m\"\nthreshold = -2\n", wantErr: "threshold"},
		{name: "no matcher", toml: "[[shaping.automation]]\naction = \"suspend\"\nduration = \"1m\"\n", wantErr: "needs regex"},
		{name: "unknown pool", toml: "[shaping]\nstreams = { marketing = \"nope\" }\n", wantErr: "unknown pool"},
		{name: "unknown warmup", toml: "[[shaping.pool]]\nname = \"p\"\n[[shaping.pool.source]]\nname = \"s\"\nwarmup = \"x\"\n", wantErr: "unknown warmup"},
		{name: "bad warmup start", toml: "[[shaping.warmup]]\nname = \"w\"\n[[shaping.pool]]\nname = \"p\"\n[[shaping.pool.source]]\nname = \"s\"\nwarmup = \"w\"\nwarmup_start = \"soon\"\n", wantErr: "warmup_start"},
		{name: "empty pool", toml: "[[shaping.pool]]\nname = \"p\"\n", wantErr: "at least one source"},
		{name: "source twice", toml: "[[shaping.pool]]\nname = \"p\"\n[[shaping.pool.source]]\nname = \"s\"\n[[shaping.pool]]\nname = \"q\"\n[[shaping.pool.source]]\nname = \"s\"\n", wantErr: "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("petrel.toml", []byte(tt.toml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name != "full" {
				return
			}
			s := c.Shaping
			r := s.Rules[0]
			if r.MXSuffixes[0] != ".bigmail.test" || r.EnableTLS != TLSRequired || r.MaxMessageRate != (Rate{500, time.Second}) {
				t.Fatalf("rule not normalised: %+v", r)
			}
			if a := s.Automation[0]; a.Action != ActionThrottle || a.Factor != 0.5 || a.Duration.Duration != 300*time.Millisecond || a.Window.Duration != time.Hour {
				t.Fatalf("automation: %+v", a)
			}
			if s.Pools[1].Sources[0].Weight != 3 || s.Pools[0].Sources[0].Weight != 1 || s.MaxWait.Duration != 5*time.Second {
				t.Fatalf("pools: %+v", s.Pools)
			}
		})
	}
}
