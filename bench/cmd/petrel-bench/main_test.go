package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"unknown command", []string{"bogus"}, 1, nil},
		{"bad flag", []string{"run", "-nope"}, 2, nil},
		{"bad peer-n", []string{"run", "-peer-n", "exim"}, 2, nil},
		{"bad peer-n count", []string{"run", "-peer-n", "exim=0"}, 2, nil},
		{"noop quick", []string{"run", "-quick", "-n", "40", "-scenarios", "noop,petrel_relay", "-petreld", "/nonexistent/petreld"}, 0,
			[]string{"scenario=noop load=pipelined_persistent msgs_per_s=", "pipelined  noop", "scenario=petrel_relay ", "scenario=summary ", "concurrency=10", "n=40"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errOut.String())
			}
			for _, c := range tc.contains {
				if !strings.Contains(out.String(), c) {
					t.Errorf("output lacks %q:\n%s", c, out.String())
				}
			}
		})
	}
}
