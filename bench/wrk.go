package bench

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reported.
type WrkResult struct {
	Requests int64
	Elapsed  time.Duration
	RPS      float64
	P50, P99 time.Duration
	// Bad counts non-2xx/3xx responses; SocketErrors connect, read,
	// write errors and timeouts.
	Bad          int64
	SocketErrors int64
}

// RunWrk runs wrk (Debian package wrk) against url with threads and
// conns for d and parses its report.
func RunWrk(ctx context.Context, url string, threads, conns int, d time.Duration) (WrkResult, error) {
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", max(int(d.Seconds()), 1)), "--latency", url).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return ParseWrk(string(out))
}

// ParseWrk parses wrk's text report (with --latency).
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveRPS, haveCount bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "50%":
			r.P50, _ = parseWrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.P99, _ = parseWrkDuration(f[1])
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: request count %q", f[0])
			}
			r.Requests, haveCount = n, true
			r.Elapsed, _ = parseWrkDuration(strings.TrimSuffix(f[3], ","))
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: Requests/sec %q", f[1])
			}
			r.RPS, haveRPS = v, true
		case len(f) == 5 && f[0] == "Non-2xx":
			r.Bad, _ = strconv.ParseInt(f[4], 10, 64)
		case len(f) >= 3 && f[0] == "Socket" && f[1] == "errors:":
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				r.SocketErrors += n
			}
		}
	}
	if !haveRPS || !haveCount || r.P99 == 0 {
		return r, fmt.Errorf("wrk: unparsable report: %q", out)
	}
	return r, nil
}

// parseWrkDuration parses wrk's "90.00us", "1.23ms", "2.00s", "1.5m".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk: duration %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk: duration %q", s)
}
