package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
)

func TestParseProcStatus(t *testing.T) {
	status := []byte("Name:\tpetreld\nVmPeak:\t  812345 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\nOdd:\t5 MB\nBad:\tx kB\nNeg:\t-1 kB\nHuge:\t99999999999999999 kB\nUnit:\t5 GB\n")
	tests := []struct {
		key  string
		want int64
		ok   bool
	}{
		{"VmHWM", 20480 << 10, true},
		{"VmRSS", 10240 << 10, true},
		{"Threads", 9, true},
		{"Odd", 5 << 20, true},
		{"Bad", 0, false},
		{"Neg", 0, false},
		{"Huge", 0, false},
		{"Unit", 0, false},
		{"Missing", 0, false},
		{"Vm", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseProcStatus(status, tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseProcStatus(%s) = %d, %v; want %d, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	// Our own process has a real status file.
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		testnet.SkipOrFail(t, "no /proc")
	}
	if hwm, ok := ParseProcStatus(b, "VmHWM"); !ok || hwm < 1<<20 {
		t.Errorf("own VmHWM = %d, %v", hwm, ok)
	}
}

func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t  1234 kB\n"), "VmHWM")
	f.Add([]byte("VmRSS: 1 mB"), "VmRSS")
	f.Add([]byte(":\n:"), "")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		if n, ok := ParseProcStatus(b, key); ok && n < 0 {
			t.Fatalf("negative size %d", n)
		}
	})
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	empty, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	full, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if full-empty < 1<<20 {
		t.Errorf("disk usage grew by %d, want >= 1 MiB", full-empty)
	}
	if _, err := DiskUsage(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
}

// TestPetreldConfigParses checks the generated config against the real
// schema, with and without the DKIM section.
func TestPetreldConfigParses(t *testing.T) {
	dir := t.TempDir()
	ds, err := NewDKIMSetup(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ds.Records["bench._domainkey.bench.test"]; !ok {
		t.Fatalf("records = %v", ds.Records)
	}
	if _, err := os.Stat(filepath.Join(dir, "bench.key")); err != nil {
		t.Fatal(err)
	}
	cfg := PetreldConfig(filepath.Join(dir, "data"), "127.0.0.1:2525", "127.0.0.1:8025", "k", "127.0.0.1:2526", "")
	c, err := config.Parse("bench.toml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Listen != "127.0.0.1:2525" || c.HTTP.Listen != "127.0.0.1:8025" || len(c.Transport) != 1 || c.Transport[0].Relay != "127.0.0.1:2526" || c.HTTP.APIKeys[0].Key != "k" {
		t.Errorf("parsed config = %+v", c)
	}
	c, err = config.Parse("dkim.toml", []byte(cfg+ds.TOML))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sending.DKIM) != 1 || c.Sending.DKIM[0].Selector != "bench" || c.Sending.DKIM[0].Domain != "bench.test" || c.Sending.DKIM[0].KeyFile != filepath.Join(dir, "bench.key") {
		t.Errorf("dkim config = %+v", c.Sending.DKIM)
	}
}

// TestRunnerLines runs the scenarios that need neither petreld nor Postfix
// and checks every requested scenario reports a line.
func TestRunnerLines(t *testing.T) {
	var out bytes.Buffer
	r := &Runner{P: Params{N: 50, Size: 1024, Sessions: 4, Recipients: 2, Rounds: 3, QueueN: 10}, TmpDir: os.TempDir(), Out: &out, Meta: Meta{Go: "go1.x", Postfix: "none", Commit: "abc"}}
	lines, err := r.Run(context.Background(), []string{ScenarioNoop, ScenarioPetrel, ScenarioRatioNoop, ScenarioDKIM, ScenarioQueue1M, ScenarioAckLatency})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ScenarioNoop, ScenarioPetrel, ScenarioRatioNoop, ScenarioAckLatency, ScenarioDKIM, ScenarioQueue1M, ScenarioSummary}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		if l.Scenario != want[i] {
			t.Errorf("line %d = %s, want %s", i, l.Scenario, want[i])
		}
		for _, k := range []string{"go", "postfix", "size", "concurrency", "n", "commit"} {
			if _, ok := l.Get(k); !ok {
				t.Errorf("%s lacks %s", l.Scenario, k)
			}
		}
	}
	if v, _ := lines[0].Get("msgs_per_s"); atof(v) <= 0 {
		t.Errorf("noop rate = %q", v)
	}
	if v, _ := lines[0].Get("runs"); strings.Count(v, "/") != 2 {
		t.Errorf("noop runs = %q, want 3 rounds", v)
	}
	for _, l := range lines[1:6] {
		if v, _ := l.Get("skipped"); v != "no_petreld_binary" {
			t.Errorf("%s skipped = %q", l.Scenario, v)
		}
	}
	// One key=value line per scenario, then the table (its rows: the
	// pipelined noop row, the skipped Petrel row).
	if got := strings.Count(out.String(), "\nscenario=") + 1; got != len(want) || !strings.HasPrefix(out.String(), "scenario=") {
		t.Errorf("printed %d result lines:\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), "\npipelined  ") || !strings.Contains(out.String(), "skipped: no_petreld_binary") {
		t.Errorf("table lacks the pipelined rows:\n%s", out.String())
	}
}

// TestStartPetreldFailsFast checks a daemon that exits at once is reported
// with its log instead of waiting for the readiness timeout.
func TestStartPetreldFailsFast(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-petreld")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"config: $2: boom\" >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := StartPetreld(context.Background(), PetreldOptions{Binary: script, Dir: dir, Relay: "127.0.0.1:9"})
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Errorf("error lacks the daemon's log: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "petrel.toml"))
	if err != nil || !strings.Contains(string(cfg), `relay = "127.0.0.1:9"`) {
		t.Errorf("config = %s, %v", cfg, err)
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	f := newMessageFactory("bench@bench.test", 4096)
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = f.appendMessage(buf[:0], i, 1, "rcpt@sink.test")
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSinkLoopback measures the load generator and sink together
// over loopback: one op is one message.
func BenchmarkSinkLoopback(b *testing.B) {
	s, err := StartSink(SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	res, err := RunSMTP(context.Background(), SMTPLoad{Addr: s.Addr(), Sessions: 8, Messages: b.N, Size: 4096})
	if err != nil || res.Accepted != int64(b.N) {
		b.Fatalf("%+v %v", res, err)
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"25438 (be-petreld-tmp) S 1 25437 25437 0 -1 4194560 26040 0 0 0 2150 521 0 0 20 0 12 0 52 2197004 23497", 26710 * time.Millisecond, true},
		{"1 (a) b) c) R 0 1 1 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond, true},
		{"1 (x) S 1 2 3", 0, false},
		{"no paren", 0, false},
		{"1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 3", 0, false},
		{"1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseProcStat([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseProcStat(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		testnet.SkipOrFail(t, "no /proc")
	}
	own, ok := ParseProcStat(b)
	if !ok {
		t.Errorf("own stat unparsable: %s", b)
	}
	tree, err := TreeCPU(os.Getpid())
	if err != nil || tree < own {
		t.Errorf("TreeCPU(self) = %v, %v; own %v", tree, err, own)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0"))
	f.Add([]byte(")))"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, ok := ParseProcStat(b); ok && d < 0 {
			t.Fatalf("negative cpu %v", d)
		}
	})
}
