package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func TestCgroupMounts(t *testing.T) {
	mounts := "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n" +
		"cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n" +
		"cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n" +
		"cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n" +
		"short line\n"
	v2, v1 := cgroupMounts([]byte(mounts))
	if v2 != "/sys/fs/cgroup/unified" || v1 != "/sys/fs/cgroup/cpuacct" {
		t.Errorf("cgroupMounts = %q, %q", v2, v1)
	}
	if v2, v1 := cgroupMounts([]byte("proc /proc proc rw 0 0\n")); v2 != "" || v1 != "" {
		t.Errorf("no cgroups: %q, %q", v2, v1)
	}
}

func TestParseCgroupUsage(t *testing.T) {
	tests := []struct {
		source, in string
		want       time.Duration
		ok         bool
	}{
		{CPUSourceCgroup2, "usage_usec 96164\nuser_usec 96164\nsystem_usec 0\n", 96164 * time.Microsecond, true},
		{CPUSourceCgroup2, "user_usec 5\n", 0, false},
		{CPUSourceCgroup2, "usage_usec x\n", 0, false},
		{CPUSourceCgroup1, "94208357\n", 94208357, true},
		{CPUSourceCgroup1, "-1\n", -1, false},
		{CPUSourceCgroup1, "", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseCgroupUsage(tc.source, []byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseCgroupUsage(%s, %q) = %v, %v; want %v, %v", tc.source, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestCPUGroupAccountsForkedChildren burns CPU in a grandchild that the
// started shell forks and checks the group counts it, sees its memory,
// and that Kill leaves no process behind.
func TestCPUGroupAccountsForkedChildren(t *testing.T) {
	g := NewCPUGroup("test-" + strings.ReplaceAll(t.Name(), "/", "-"))
	t.Cleanup(g.Kill)
	t.Logf("CPU source: %s", g.Source)
	// The child forks a busy grandchild (burning ~0.3 s of CPU), then
	// sleeps so the group has a live process to sample.
	cmd := g.Command("/bin/sh", "-c", `(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done) & wait; sleep 30`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.Started(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var used time.Duration
	ok := testnet.Wait(20*time.Second, func() bool {
		used, _ = g.Usage()
		return used >= 100*time.Millisecond
	})
	if !ok {
		t.Fatalf("group used %v, want >= 100ms", used)
	}
	if rss := g.SampleRSS(); rss <= 0 || g.PeakRSS() < rss {
		t.Errorf("rss %d, peak %d", rss, g.PeakRSS())
	}
	if len(g.Pids()) == 0 {
		t.Error("no live pid in the group")
	}
	g.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("child survived Kill")
	}
	if pids := g.Pids(); len(pids) != 0 && g.Source != CPUSourceProc {
		t.Errorf("pids left: %v", pids)
	}
}

func TestCountLogLinesAndFiles(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mainlog")
	body := "a => x@y R=r T=t\nb <= x@y\nc => z@y R=r T=t\nmta delivery result=\"Ok\"\nmta delivery result=\"TempFail\"\n"
	if err := os.WriteFile(log, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		subs []string
		want int64
	}{{[]string{" => "}, 2}, {[]string{"mta delivery", `result="Ok"`}, 1}, {[]string{"nothing"}, 0}} {
		if n, err := CountLogLines(log, tc.subs...); err != nil || n != tc.want {
			t.Errorf("CountLogLines(%q) = %d, %v; want %d", tc.subs, n, err, tc.want)
		}
	}
	if _, err := CountLogLines(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing log: no error")
	}
	if err := os.MkdirAll(filepath.Join(dir, "q", "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"q/a/1", "q/a/b/2", "q/3"} {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := CountFiles(filepath.Join(dir, "q")); err != nil || n != 3 {
		t.Errorf("CountFiles = %d, %v", n, err)
	}
	if n, err := CountFiles(filepath.Join(dir, "none")); err != nil || n != 0 {
		t.Errorf("CountFiles(missing) = %d, %v", n, err)
	}
}

func TestPromSample(t *testing.T) {
	text := "# HELP x\npetrel_queue_messages 3\npetrel_queue_messages_total 9\n" +
		`petrel_delivery_attempts_total{outcome="deferred"} 2` + "\n" +
		`petrel_delivery_attempts_total{outcome="delivered"} 1.2e+06` + "\n"
	for _, tc := range []struct {
		name string
		want float64
		ok   bool
	}{
		{"petrel_queue_messages", 3, true},
		{`petrel_delivery_attempts_total{outcome="delivered"}`, 1.2e6, true},
		{"petrel_missing", 0, false},
	} {
		v, ok, err := PromSample(bufio.NewScanner(strings.NewReader(text)), tc.name)
		if err != nil || ok != tc.ok || v != tc.want {
			t.Errorf("PromSample(%s) = %v, %v, %v", tc.name, v, ok, err)
		}
	}
}

func TestSourceArgs(t *testing.T) {
	o := SourceOptions{Addr: "127.0.0.1:25", Sessions: 20, Messages: 100, Size: 4096, Recipients: 1, PerConnection: true}
	got := strings.Join(SourceArgs(o), " ")
	if strings.Contains(got, " -d") || !strings.HasPrefix(got, "-s 20 -m 100 -l 4096 -r 1 ") || !strings.HasSuffix(got, " 127.0.0.1:25") {
		t.Errorf("per-connection args = %q", got)
	}
	o.PerConnection = false
	if got := strings.Join(SourceArgs(o), " "); !strings.Contains(got, " -d ") {
		t.Errorf("persistent args = %q", got)
	}
}

// TestSinkCountsDuplicates delivers the same bytes twice and a third,
// different message: one duplicate.
func TestSinkCountsDuplicates(t *testing.T) {
	s := startSink(t, SinkOptions{CheckDuplicates: true})
	msg := "Received: by mta id A1\r\nSubject: x\r\n\r\nbody\r\n"
	for _, m := range []string{msg, msg, strings.Replace(msg, "A1", "A2", 1)} {
		if err := sendPlain(t, s.Addr(), "a@b.test", []string{"c@d.test"}, strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Messages != 3 || st.Duplicates != 1 {
		t.Errorf("stats = %+v, want 3 messages 1 duplicate", st)
	}
}

func TestTableAndCells(t *testing.T) {
	if got := cell("a\nb   c"); got != "a b c" {
		t.Errorf("cell = %q", got)
	}
	if got := cell(strings.Repeat("x", 200)); len(got) != 90 || !strings.HasSuffix(got, "...") {
		t.Errorf("long cell = %d %q", len(got), got)
	}
	var out bytes.Buffer
	r := &Runner{P: Params{Sessions: 2, Size: 100, Recipients: 1, Rounds: 1}, Meta: Meta{Commit: "c0ffee"}}
	cs := &contStats{c: Contenders()[ContPostfix], load: LoadReference, n: 5, rates: []float64{10, 30, 20}, runs: []string{"10", "30", "20"}, cpu: []float64{100}, ratioPF: []float64{1}}
	skip := &contStats{c: Contenders()[ContChasquid], load: LoadReference, n: 5, skip: "needs_auth"}
	r.addTableRows(ScenarioRefLoad, []*contStats{cs, skip}, 3)
	r.PrintTable(&out)
	s := out.String()
	for _, want := range []string{"msg/s", "x postfix", "CPU us/msg", "durability", "reproduce", "c0ffee", "postfix", " 20 ", "skipped: needs_auth", "-contenders postfix -n 5 -rounds 3"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}

// TestContendersRelay runs every contender this machine has (Postfix, and
// the peers bench/fetch-peers.sh unpacked) on a few messages under the
// reference load (per_connection for chasquid, which needs AUTH) and
// checks the whole run: exactly N at the sink, no duplicate, the queue
// empty, the contender's own log agreeing, DKIM verified where it signs,
// and no process of it left.
func TestContendersRelay(t *testing.T) {
	needPostfix(t)
	r := &Runner{P: Params{N: 5, Size: 2048, Sessions: 3, Recipients: 1, Rounds: 1}, TmpDir: os.TempDir(), PeerRoot: DefaultPeerRoot()}
	// Not t.TempDir: its parent is 0700, and the peers' unprivileged
	// daemons (Exim's delivery as Debian-exim) must read the key.
	dir, err := os.MkdirTemp("", "petrel-bench-test-dkim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ds, err := NewDKIMSetup(dir)
	if err != nil {
		t.Fatal(err)
	}
	all := Contenders()
	for _, name := range []string{ContNoop, ContPostfix, ContPostfixDKIM, ContExim, ContEximDKIM, ContOpenSMTPD, ContHaraka, ContChasquid} {
		t.Run(name, func(t *testing.T) {
			c := all[name]
			if c.Skip != nil {
				if why := c.Skip(r.mtaOptions("", 0, nil, nil)); why != "" {
					testnet.SkipOrFail(t, "%s: %s (bench/fetch-peers.sh unpacks the peers; .ci/run runs it)", name, why)
				}
			}
			load := LoadReference
			if c.NeedsAuth {
				load = LoadPerConn
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := r.runContender(ctx, c, load, r.P.N, ds)
			if err != nil {
				t.Fatal(err)
			}
			if res.sink.Messages != 5 || res.sink.Duplicates != 0 {
				t.Errorf("sink = %+v", res.sink)
			}
			if c.Start != nil && (res.delivered != 5 || res.cpu <= 0) {
				t.Errorf("delivered %d (own log), cpu %v", res.delivered, res.cpu)
			}
			if c.DKIM && res.sink.DKIMPass != 5 {
				t.Errorf("DKIM pass %d of 5 (fail %d none %d)", res.sink.DKIMPass, res.sink.DKIMFail, res.sink.DKIMNone)
			}
			if load == LoadPerConn && len(res.lat) != 5 {
				t.Errorf("%d latencies", len(res.lat))
			}
		})
	}
	// Nothing listens on port 25 afterwards and no peer daemon is left.
	if out, _ := exec.Command("ss", "-ltn", "sport = :25").Output(); bytes.Contains(out, []byte("LISTEN")) {
		t.Errorf("something listens on port 25:\n%s", out)
	}
}
