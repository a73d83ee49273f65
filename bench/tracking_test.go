package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestParseWrk parses wrk reports as wrk 4.1 (Debian) prints them.
func TestParseWrk(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      WrkResult
		bad       bool
	}{
		{"plain", `Running 1s test @ http://127.0.0.1:18099/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.94ms   45.07ms 255.46ms   87.62%
    Req/Sec    10.11k    14.65k   41.11k    77.78%
  Latency Distribution
     50%   90.00us
     75%   13.89ms
     90%   79.74ms
     99%  217.63ms
  9558 requests in 1.07s, 1.10MB read
Requests/sec:   8910.68
Transfer/sec:      1.03MB
`, WrkResult{Requests: 9558, Elapsed: 1070 * time.Millisecond, RPS: 8910.68, P50: 90 * time.Microsecond, P99: 217630 * time.Microsecond}, false},
		{"errors", `  Latency Distribution
     50%    1.10ms
     99%    3.20ms
  497654 requests in 10.00s, 55.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  49765.40
`, WrkResult{Requests: 497654, Elapsed: 10 * time.Second, RPS: 49765.40, P50: 1100 * time.Microsecond, P99: 3200 * time.Microsecond, Bad: 5, SocketErrors: 14}, false},
		{"no report", "unable to connect to 127.0.0.1:1 Connection refused\n", WrkResult{}, true},
	} {
		got, err := ParseWrk(c.out)
		if (err != nil) != c.bad {
			t.Fatalf("%s: err %v", c.name, err)
		}
		if !c.bad && (got.Requests != c.want.Requests || got.RPS != c.want.RPS || got.P50.Round(time.Microsecond) != c.want.P50 ||
			got.P99.Round(time.Microsecond) != c.want.P99 || got.Bad != c.want.Bad || got.SocketErrors != c.want.SocketErrors ||
			got.Elapsed.Round(time.Millisecond) != c.want.Elapsed) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// BenchmarkTrackingHTTP measures the open pixel and the click redirect
// of a real petreld (built from this tree) with wrk (2 threads), beside a
// plain net/http "hello" handler in the test process measured in the
// same run against the same petreld's presence: requests/s, p50/p99
// latency and petreld CPU per request (from /proc: the daemon's whole
// process, the engagement log's writer and its event-log forwarder
// included). Every endpoint is measured at each wrk connection count of
// PETREL_BENCH_CONNS (default "16,64"): 16 is the shipped [http]
// public_max_conns_per_ip (what one client IP may have in flight); for a
// larger count the limit is raised to it (one wrk IP stands for many
// recipients). Every pixel request is an engagement written to the
// engagement log; the run checks they all reached the stats.
// BenchmarkTrackingHTTPRelay is the same while petreld relays mail.
//
//	go test -run '^$' -bench 'TrackingHTTP$' -benchtime 1x ./bench/       # quiet MTA
//	go test -run '^$' -bench TrackingHTTPRelay -benchtime 1x ./bench/     # while relaying 200 msg/s
//	PETREL_BENCH_SECONDS=20 go test -run '^$' -bench TrackingHTTP -benchtime 1x ./bench/   # both
//
// PETREL_BENCH_PROFILE=DIR saves a CPU profile of petreld during each
// tracking run (DIR/petreld-NAME-pixel-cN.pprof, ...), and its mutex,
// block and allocation profiles after it.
//
// PETREL_BENCH_PETRELD="before=/path/petreld,after=/path/petreld" runs
// those binaries instead of this tree's, interleaved round by round
// (PETREL_BENCH_ROUNDS, default 1), so a shared machine's load hits both
// alike; each line is tagged with its binary's name.
func BenchmarkTrackingHTTP(b *testing.B) { benchTracking(b, 0) }

// BenchmarkTrackingHTTPRelay is BenchmarkTrackingHTTP while the MTA
// relays mail: an SMTP load generator submits PETREL_BENCH_RELAY_RATE
// messages/s (default 200; 4 KiB, one recipient, 4 sessions) to the same
// petreld, which relays them to a counting sink, from before the first
// wrk run to after the last. Each result line gives the relay rate the
// sink saw during that wrk run; a tracking_relay line sums it up.
func BenchmarkTrackingHTTPRelay(b *testing.B) {
	rate := 200
	if v, err := strconv.Atoi(os.Getenv("PETREL_BENCH_RELAY_RATE")); err == nil && v > 0 {
		rate = v
	}
	benchTracking(b, rate)
}

func benchTracking(b *testing.B, relayRate int) {
	if _, err := exec.LookPath("wrk"); err != nil {
		testnet.SkipOrFail(b, "wrk not installed (apt-get install wrk)")
	}
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("PETREL_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("PETREL_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	conns := []int{16, 64}
	if v := os.Getenv("PETREL_BENCH_CONNS"); v != "" {
		conns = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("PETREL_BENCH_CONNS: %q", v)
			}
			conns = append(conns, n)
		}
	}
	dur := time.Duration(secs) * time.Second
	ctx := context.Background()
	dir := b.TempDir()
	for _, bin := range []string{"petreld", "petrelctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, bin), "../cmd/"+bin).CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v %s", bin, err, out)
		}
	}
	bins := []trackingBinary{{"tree", filepath.Join(dir, "petreld")}}
	if v := os.Getenv("PETREL_BENCH_PETRELD"); v != "" {
		bins = nil
		for _, kv := range strings.Split(v, ",") {
			name, path, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("PETREL_BENCH_PETRELD: want name=path, got %q", kv)
			}
			bins = append(bins, trackingBinary{name, path})
		}
	}
	hello := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	defer hello.Close()
	report("tracking_setup relay_rate=%d conns=%v wrk_threads=2 seconds=%d load=%s", relayRate, conns, secs, loadAvg())
	type sum struct{ cpu, reqs int64 }
	totals := map[string]*sum{}
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			for _, bin := range bins {
				tr := trackingRun{b: b, bin: bin, ctl: filepath.Join(dir, "petrelctl"), dir: filepath.Join(dir, fmt.Sprintf("run-%s-%d-%d", bin.name, i, round)),
					secs: secs, dur: dur, conns: conns, relayRate: relayRate, hello: hello.URL + "/", round: round}
				for name, c := range tr.run(ctx) {
					t := totals[bin.name+" "+name]
					if t == nil {
						t = &sum{}
						totals[bin.name+" "+name] = t
					}
					t.cpu += c[0]
					t.reqs += c[1]
				}
			}
		}
	}
	var keys []string
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if t := totals[k]; t.reqs > 0 {
			report("tracking_total %s petreld_cpu_per_req=%s over %d requests", k, time.Duration(t.cpu/t.reqs), t.reqs)
		}
	}
	report("tracking_done load=%s", loadAvg())
}

// trackingBinary is a petreld to measure and its tag in the report.
type trackingBinary struct{ name, path string }

// trackingRun is one petreld's measurement: start it (relaying mail at
// relayRate when > 0), measure hello, pixel, click and junk tokens with
// wrk at each connection count, check the pixel engagements reached the
// stats, stop it.
type trackingRun struct {
	b              *testing.B
	bin            trackingBinary
	ctl, dir       string
	secs           int
	dur            time.Duration
	conns          []int
	relayRate      int
	hello          string
	round          int
	sink           *Sink
	relayMsgs      int64
	relayElapsed   time.Duration
	relayStartedAt time.Time
}

// run returns each endpoint's (NAME-cN) petreld CPU (ns) and completed
// requests.
func (tr *trackingRun) run(ctx context.Context) map[string][2]int64 {
	b := tr.b
	if err := os.MkdirAll(tr.dir, 0o755); err != nil {
		b.Fatal(err)
	}
	relay := "127.0.0.1:9"
	if tr.relayRate > 0 {
		sink, err := StartSink(SinkOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer sink.Close()
		tr.sink, relay = sink, sink.Addr()
	}
	o := PetreldOptions{Binary: tr.bin.path, Dir: tr.dir, Relay: relay}
	if m := slices.Max(tr.conns); m > 16 {
		o.HTTPTOML = fmt.Sprintf("public_max_conns_per_ip = %d", m)
	}
	p, err := StartPetreld(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	if err := WaitListening(ctx, p.HTTPAddr, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	token := func(args ...string) string {
		out, err := exec.Command(tr.ctl, append([]string{"tracking", "token", "-data-dir", p.DataDir, "-campaign", "bench"}, args...)...).Output()
		if err != nil {
			b.Fatalf("petrelctl tracking token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	runs := []struct{ name, url string }{
		{"hello", tr.hello},
		{"pixel", "http://" + p.HTTPAddr + "/t/o/" + token("-kind", "open", "-provider", "google", "-stream", "marketing") + ".gif"},
		{"click", "http://" + p.HTTPAddr + "/t/c/" + token("-kind", "click", "-url", "https://shop.test/sale?utm_source=petrel")},
		{"junk", "http://" + p.HTTPAddr + "/t/c/AAAAjunk"},
	}
	var relayDone chan *LoadResult
	stopRelay := func() {}
	if tr.relayRate > 0 {
		rctx, cancel := context.WithCancel(ctx)
		relayDone = make(chan *LoadResult, 1)
		tr.relayStartedAt = time.Now()
		go func() {
			// More than the runs need; cancelled after the last.
			res, _ := RunSMTP(rctx, SMTPLoad{Addr: p.SMTPAddr, Sessions: 4, Messages: tr.relayRate * (len(runs)*len(tr.conns)*(tr.secs+5) + 60),
				Rate: float64(tr.relayRate), Timeout: 30 * time.Second})
			relayDone <- res
		}()
		stopRelay = cancel
		time.Sleep(2 * time.Second) // the relay reaches its pace first
	}
	defer stopRelay()
	out := map[string][2]int64{}
	var pixelReqs int64
	for _, r := range runs {
		for _, c := range tr.conns {
			key := fmt.Sprintf("%s-c%d", r.name, c)
			cpu0, _ := p.CPU()
			var sink0 int64
			if tr.sink != nil {
				sink0 = tr.sink.Stats().Messages
			}
			var prof chan struct{}
			if d := os.Getenv("PETREL_BENCH_PROFILE"); d != "" && r.name != "hello" {
				prof = make(chan struct{})
				go func() {
					defer close(prof)
					profilePetreld(ctx, b, p, filepath.Join(d, "petreld-"+tr.bin.name+"-"+key+".pprof"), tr.secs-1)
				}()
			}
			t0 := time.Now()
			res, err := RunWrk(ctx, r.url, 2, c, tr.dur)
			if prof != nil {
				<-prof
			}
			if err != nil {
				b.Fatal(err)
			}
			cpu1, _ := p.CPU()
			relayNote := ""
			if tr.sink != nil {
				n := tr.sink.Stats().Messages - sink0
				el := time.Since(t0)
				tr.relayMsgs += n
				tr.relayElapsed += el
				relayNote = fmt.Sprintf(" relay_msgs_per_s=%.0f", float64(n)/el.Seconds())
			}
			// A wrong answer fails the run; a few timeouts (wrk's 2 s) are
			// the shared machine's, and only over 0.1% fail it.
			if r.name != "junk" && (res.Bad != 0 || res.SocketErrors*1000 > res.Requests) {
				b.Fatalf("%s: %d bad responses, %d socket errors", key, res.Bad, res.SocketErrors)
			}
			if r.name == "junk" && res.Bad != res.Requests {
				b.Fatalf("junk tokens: %d of %d not 404", res.Bad, res.Requests)
			}
			if r.name == "hello" {
				report("tracking_hello petreld=%s round=%d conns=%d req_per_s=%.0f p50=%s p99=%s requests=%d%s", tr.bin.name, tr.round, c, res.RPS, res.P50, res.P99, res.Requests, relayNote)
				b.ReportMetric(res.RPS, key+"_req/s")
				b.ReportMetric(float64(res.P99.Microseconds()), key+"_p99_us")
				continue
			}
			cpuPer := time.Duration(0)
			if res.Requests > 0 {
				cpuPer = (cpu1 - cpu0) / time.Duration(res.Requests)
			}
			if r.name == "pixel" {
				pixelReqs += res.Requests
			}
			out[key] = [2]int64{int64(cpu1 - cpu0), res.Requests}
			report("tracking_%s petreld=%s round=%d conns=%d req_per_s=%.0f p50=%s p99=%s requests=%d socket_errors=%d petreld_cpu_per_req=%s%s",
				r.name, tr.bin.name, tr.round, c, res.RPS, res.P50, res.P99, res.Requests, res.SocketErrors, cpuPer, relayNote)
			b.ReportMetric(res.RPS, key+"_req/s")
			b.ReportMetric(float64(res.P99.Microseconds()), key+"_p99_us")
			if cpuPer > 0 {
				b.ReportMetric(float64(cpuPer.Nanoseconds()), key+"_cpu_ns/req")
			}
		}
	}
	if tr.relayRate > 0 {
		stopRelay()
		res := <-relayDone
		st := tr.sink.Stats()
		report("tracking_relay petreld=%s round=%d target_msgs_per_s=%d during_wrk_msgs_per_s=%.0f submitted=%d relayed=%d tempfail=%d permfail=%d errors=%d over=%s",
			tr.bin.name, tr.round, tr.relayRate, float64(tr.relayMsgs)/tr.relayElapsed.Seconds(), res.Accepted, st.Messages, res.TempFailed, res.PermFailed,
			res.Errors, time.Since(tr.relayStartedAt).Round(time.Second))
		b.ReportMetric(float64(tr.relayMsgs)/tr.relayElapsed.Seconds(), "relay_msgs/s")
		if res.Accepted == 0 || st.Messages == 0 {
			b.Fatalf("relay: %d submitted, %d relayed (%v)", res.Accepted, st.Messages, res.FirstErr)
		}
	}
	// wrk counts completed requests; the last in flight may have been
	// recorded too.
	inFlight := int64(slices.Max(tr.conns) * len(tr.conns))
	deadline := time.Now().Add(15 * time.Second)
	for {
		var rep struct {
			MachineOpens int64 `json:"machine_opens"`
			Opens        int64 `json:"opens"`
		}
		if err := p.API(ctx, "GET", "/api/v1/stats/campaigns/bench", nil, &rep); err != nil {
			b.Fatal(err)
		}
		got := rep.MachineOpens + rep.Opens // wrk sends no User-Agent: machine
		if got >= pixelReqs && got <= pixelReqs+inFlight {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: stats count %d opens, wrk completed %d pixel requests", tr.bin.name, got, pixelReqs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return out
}

// loadAvg is /proc/loadavg's first three fields ("?" if unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ",")
}

// profilePetreld saves a CPU profile of secs seconds of p to path, then
// its mutex, block and allocation profiles beside it (path with
// -mutex, -block, -allocs before .pprof; the first two are empty unless
// petreld sets their rates, e.g. a build for profiling).
func profilePetreld(ctx context.Context, b *testing.B, p *Petreld, path string, secs int) {
	savePprof(ctx, b, p, fmt.Sprintf("profile?seconds=%d", max(secs, 1)), path)
	for _, kind := range []string{"mutex", "block", "allocs"} {
		savePprof(ctx, b, p, kind, strings.TrimSuffix(path, ".pprof")+"-"+kind+".pprof")
	}
}

// savePprof saves petreld's /debug/pprof/what to path.
func savePprof(ctx context.Context, b *testing.B, p *Petreld, what, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/%s", p.HTTPAddr, what), nil)
	if err != nil {
		b.Error(err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+p.Key) // profiling needs the API key
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("profile: %s %v", resp.Status, err)
		return
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Error(err)
	}
}

// report prints one result line on stdout (a benchmark's b.Log keeps
// only its first lines).
func report(format string, args ...any) { fmt.Printf(format+"\n", args...) }
