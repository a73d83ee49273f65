package config

import (
	"strings"
	"testing"
	"time"
)

func TestMinFreeSpace(t *testing.T) {
	if d := Default().Queue.MinFreeSpace; d.Bytes != 1<<30 || d.Percent != 0 {
		t.Fatalf("default min_free_space = %+v, want 1 GiB", d)
	}
	cases := []struct {
		in      string
		bytes   int64
		percent float64
		err     bool
	}{
		{in: "1GiB", bytes: 1 << 30},
		{in: "512MiB", bytes: 512 << 20},
		{in: "500MB", bytes: 500e6},
		{in: "64 KiB", bytes: 64 << 10},
		{in: "123456", bytes: 123456},
		{in: "0", bytes: 0},
		{in: "5%", percent: 5},
		{in: "2.5 %", percent: 2.5},
		{in: "100%", err: true},
		{in: "-1GiB", err: true},
		{in: "1.5GiB", err: true},
		{in: "lots", err: true},
		{in: "9999999TiB", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			c, err := Parse("t.toml", []byte("[queue]\nmin_free_space = \""+tc.in+"\"\n"))
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), "min_free_space") && !strings.Contains(err.Error(), "invalid") {
					t.Fatalf("%q: got %v, want an error", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Queue.MinFreeSpace; got.Bytes != tc.bytes || got.Percent != tc.percent {
				t.Fatalf("%q: got %+v", tc.in, got)
			}
		})
	}
}

func TestDeadHostKeys(t *testing.T) {
	d := Default().Delivery
	if d.DeadHostTime.Duration != time.Minute || d.DeadHostMaxTime.Duration != time.Hour {
		t.Fatalf("dead-host defaults %v / %v, want 1m / 1h", d.DeadHostTime, d.DeadHostMaxTime)
	}
	cases := []struct {
		toml string
		ok   bool
	}{
		{"dead_host_time = \"30s\"\ndead_host_max_time = \"10m\"\n", true},
		{"dead_host_time = \"0s\"\n", true},
		{"dead_host_time = \"-1m\"\n", false},
		{"dead_host_time = \"2h\"\n", false}, // above the default 1h maximum
	}
	for _, tc := range cases {
		_, err := Parse("t.toml", []byte("[delivery]\n"+tc.toml))
		if tc.ok != (err == nil) {
			t.Errorf("%q: err = %v, want ok=%v", tc.toml, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "dead_host") {
			t.Errorf("%q: error %v does not name the key", tc.toml, err)
		}
	}
}
