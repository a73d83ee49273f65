package bench

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted using the
// nearest-rank method: the smallest value such that at least p percent of
// the samples are less than or equal to it. It returns 0 for no samples.
// sorted must be in ascending order.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Median returns the median of xs (mean of the two middle values for an
// even count), or 0 for an empty slice. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Latency summarises acknowledgement latencies.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarize sorts lat in place and returns its p50, p99 and maximum.
func Summarize(lat []time.Duration) Latency {
	slices.Sort(lat)
	l := Latency{N: len(lat), P50: Percentile(lat, 50), P99: Percentile(lat, 99)}
	if len(lat) > 0 {
		l.Max = lat[len(lat)-1]
	}
	return l
}

// Rate returns n per second over d, or 0 when d is not positive.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Line is one result line: a scenario name followed by key=value fields in
// insertion order.
type Line struct {
	Scenario string
	keys     []string
	vals     map[string]string
}

// NewLine starts a result line for scenario.
func NewLine(scenario string) *Line {
	return &Line{Scenario: scenario, vals: map[string]string{}}
}

// Set records key=value; values are formatted with %v, floats with two
// decimals and durations in milliseconds with suffix "ms". Setting a key
// again replaces its value in place.
func (l *Line) Set(key string, v any) *Line {
	var s string
	switch x := v.(type) {
	case float64:
		s = fmt.Sprintf("%.2f", x)
	case time.Duration:
		s = fmt.Sprintf("%.3fms", float64(x)/float64(time.Millisecond))
	default:
		s = fmt.Sprint(x)
	}
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return '_'
		}
		return r
	}, s)
	if _, ok := l.vals[key]; !ok {
		l.keys = append(l.keys, key)
	}
	l.vals[key] = s
	return l
}

// Get returns the formatted value of key.
func (l *Line) Get(key string) (string, bool) {
	v, ok := l.vals[key]
	return v, ok
}

// String renders "scenario=<name> k=v k=v ...".
func (l *Line) String() string {
	var b strings.Builder
	b.WriteString("scenario=")
	b.WriteString(l.Scenario)
	for _, k := range l.keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l.vals[k])
	}
	return b.String()
}
