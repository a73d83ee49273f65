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
// of a real petreld (built from this tree, shipped [http] limits: 16
// requests in flight per client IP, so wrk uses 16 connections) with wrk,
// beside a plain net/http "hello" handler in the same run: requests/s,
// p50/p99 latency and petreld CPU per request (from /proc: the daemon's
// whole process, the engagement log's writer and its event-log
// forwarder included). Every pixel request is an engagement written to
// the engagement log; the run checks they all reached the stats.
//
//	go test -run '^$' -bench TrackingHTTP -benchtime 1x ./bench/
//	PETREL_BENCH_SECONDS=20 go test -run '^$' -bench TrackingHTTP -benchtime 1x ./bench/
//
// PETREL_BENCH_PROFILE=DIR saves a CPU profile of petreld during each
// tracking run (DIR/petreld-NAME-pixel.pprof, ...).
//
// PETREL_BENCH_PETRELD="before=/path/petreld,after=/path/petreld" runs
// those binaries instead of this tree's, interleaved round by round
// (PETREL_BENCH_ROUNDS, default 1), so a shared machine's load hits both
// alike; each line is tagged with its binary's name.
func BenchmarkTrackingHTTP(b *testing.B) {
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
	dur := time.Duration(secs) * time.Second
	ctx := context.Background()
	dir := b.TempDir()
	for _, bin := range []string{"petreld", "petrelctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, bin), "../cmd/"+bin).CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v %s", bin, err, out)
		}
	}
	type binary struct{ name, path string }
	bins := []binary{{"tree", filepath.Join(dir, "petreld")}}
	if v := os.Getenv("PETREL_BENCH_PETRELD"); v != "" {
		bins = nil
		for _, kv := range strings.Split(v, ",") {
			name, path, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("PETREL_BENCH_PETRELD: want name=path, got %q", kv)
			}
			bins = append(bins, binary{name, path})
		}
	}
	hello := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	defer hello.Close()
	type sum struct{ cpu, reqs int64 }
	totals := map[string]*sum{}
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			res, err := RunWrk(ctx, hello.URL+"/", 2, 16, dur)
			if err != nil {
				b.Fatal(err)
			}
			report("tracking_hello round=%d req_per_s=%.0f p50=%s p99=%s requests=%d", round, res.RPS, res.P50, res.P99, res.Requests)
			b.ReportMetric(res.RPS, "hello_req/s")
			b.ReportMetric(float64(res.P99.Microseconds()), "hello_p99_us")
			for _, bin := range bins {
				for name, c := range trackingRun(ctx, b, bin.name, bin.path, filepath.Join(dir, "petrelctl"), filepath.Join(dir, fmt.Sprintf("run-%s-%d-%d", bin.name, i, round)), secs, dur) {
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
}

// trackingRun starts the petreld binary, measures its pixel, click and
// junk-token endpoints with wrk, checks the pixel engagements reached
// the stats, and stops it; it returns each endpoint's petreld CPU (ns)
// and completed requests.
func trackingRun(ctx context.Context, b *testing.B, tag, binPath, ctl, dir string, secs int, dur time.Duration) map[string][2]int64 {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	p, err := StartPetreld(ctx, PetreldOptions{Binary: binPath, Dir: dir, Relay: "127.0.0.1:9"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	if err := WaitListening(ctx, p.HTTPAddr, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	token := func(args ...string) string {
		out, err := exec.Command(ctl, append([]string{"tracking", "token", "-data-dir", p.DataDir, "-campaign", "bench"}, args...)...).Output()
		if err != nil {
			b.Fatalf("petrelctl tracking token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	runs := []struct{ name, url string }{
		{"pixel", "http://" + p.HTTPAddr + "/t/o/" + token("-kind", "open", "-provider", "google", "-stream", "marketing") + ".gif"},
		{"click", "http://" + p.HTTPAddr + "/t/c/" + token("-kind", "click", "-url", "https://shop.test/sale?utm_source=petrel")},
		{"junk", "http://" + p.HTTPAddr + "/t/c/AAAAjunk"},
	}
	out := map[string][2]int64{}
	var pixelReqs int64
	for _, r := range runs {
		cpu0, _ := p.CPU()
		var prof chan struct{}
		if d := os.Getenv("PETREL_BENCH_PROFILE"); d != "" {
			prof = make(chan struct{})
			go func() {
				defer close(prof)
				profilePetreld(ctx, b, p, filepath.Join(d, "petreld-"+tag+"-"+r.name+".pprof"), secs-1)
			}()
		}
		res, err := RunWrk(ctx, r.url, 2, 16, dur)
		if prof != nil {
			<-prof
		}
		if err != nil {
			b.Fatal(err)
		}
		cpu1, _ := p.CPU()
		// A wrong answer fails the run; a few timeouts (wrk's 2 s) are
		// the shared machine's, and only over 0.1% fail it.
		if r.name != "junk" && (res.Bad != 0 || res.SocketErrors*1000 > res.Requests) {
			b.Fatalf("%s: %d bad responses, %d socket errors", r.name, res.Bad, res.SocketErrors)
		}
		if r.name == "junk" && res.Bad != res.Requests {
			b.Fatalf("junk tokens: %d of %d not 404", res.Bad, res.Requests)
		}
		cpuPer := time.Duration(0)
		if res.Requests > 0 {
			cpuPer = (cpu1 - cpu0) / time.Duration(res.Requests)
		}
		if r.name == "pixel" {
			pixelReqs += res.Requests
		}
		out[r.name] = [2]int64{int64(cpu1 - cpu0), res.Requests}
		report("tracking_%s petreld=%s req_per_s=%.0f p50=%s p99=%s requests=%d socket_errors=%d petreld_cpu_per_req=%s", r.name, tag, res.RPS, res.P50, res.P99, res.Requests, res.SocketErrors, cpuPer)
		b.ReportMetric(res.RPS, r.name+"_req/s")
		b.ReportMetric(float64(res.P99.Microseconds()), r.name+"_p99_us")
		if cpuPer > 0 {
			b.ReportMetric(float64(cpuPer.Nanoseconds()), r.name+"_cpu_ns/req")
		}
	}
	// wrk counts completed requests; the last in flight may have been
	// recorded too.
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
		if got >= pixelReqs && got <= pixelReqs+16 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: stats count %d opens, wrk completed %d pixel requests", tag, got, pixelReqs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return out
}

// profilePetreld saves a CPU profile of secs seconds of p to path.
func profilePetreld(ctx context.Context, b *testing.B, p *Petreld, path string, secs int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.HTTPAddr, max(secs, 1)), nil)
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
