package shaping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/mta"
)

// parseShaping decodes a [shaping] section body (without the prefix) the
// way config.Parse would, then validates it.
func parseShaping(t *testing.T, src string) config.ShapingConfig {
	t.Helper()
	c, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c.Shaping
}

func newShaper(t *testing.T, src string) (*Shaper, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(parseShaping(t, src), "petrel.test", nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// metricValue gathers reg and returns the value of name (counter, gauge,
// or a histogram's sample count) for the series whose only label has
// value label ("" for unlabelled metrics); 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if lp := m.GetLabel(); label != "" && (len(lp) != 1 || lp[0].GetValue() != label) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func policyErr(t *testing.T, err error) *mta.PolicyError {
	t.Helper()
	var pe *mta.PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("want *mta.PolicyError, got %v", err)
	}
	return pe
}

func TestDefaultsParse(t *testing.T) {
	d, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range d.Rules {
		names[r.Name] = true
	}
	for _, want := range []string{"default", "google", "yahoo", "outlook", "office365", "apple", "comcast"} {
		if !names[want] {
			t.Errorf("defaults.toml lacks rule %q", want)
		}
	}
	// The shipped file must also be valid as a [shaping] section.
	var raw map[string]any
	if _, err := toml.Decode(string(defaultsTOML), &raw); err != nil {
		t.Fatal(err)
	}
}

func TestConnPermitCarriesRule(t *testing.T) {
	s, _ := newShaper(t, ``)
	tests := []struct {
		dest     mta.Dest
		maxMsgs  int
		idle     time.Duration
		tls      mta.TLSMode
		wantEHLO string
	}{
		{mta.Dest{Domain: "comcast.net", MXHost: "mx1.comcast.net"}, 1000, 30 * time.Second, mta.TLSRequired, "petrel.test"},
		{mta.Dest{Domain: "x.example", MXHost: "aspmx.l.google.com"}, 50, 60 * time.Second, mta.TLSOpportunistic, "petrel.test"},
		{mta.Dest{Domain: "icloud.com"}, 5, 0, mta.TLSOpportunistic, "petrel.test"},
	}
	for _, tt := range tests {
		p, err := s.AcquireConn(context.Background(), tt.dest)
		if err != nil {
			t.Fatal(err)
		}
		if p.MaxMessages != tt.maxMsgs || p.IdleTimeout != tt.idle || p.TLS != tt.tls ||
			p.Egress.EHLO != tt.wantEHLO || p.Egress.Name != "default" || p.Egress.LocalIP != "" {
			t.Errorf("%s: permit %+v", tt.dest.Domain, p)
		}
		p.Release()
		p.Release() // a second Release must not free a second slot
	}
	for _, l := range s.Status().Limits {
		if l.ActiveConnections != 0 {
			t.Errorf("%s: %d connections still counted", l.Key, l.ActiveConnections)
		}
	}
}

// bigmailRule is a [[shaping.rule]] for MX hosts under .bigmail.test.
func bigmailRule(connLim, perConn int, msgRate float64, extra string) string {
	return fmt.Sprintf(`
[[shaping.rule]]
name = "bigmail"
mx_suffixes = [".bigmail.test"]
connection_limit = %d
max_deliveries_per_connection = %d
max_message_rate = "%g/s"
%s
`, connLim, perConn, msgRate, extra)
}

// checkMails asserts that no connection carried more than perConn of
// mails and that no window held more than msgRate allows (plus a slack
// of 3 for the limiter's burst and timestamp jitter). It returns the
// busiest window's count.
func checkMails(t *testing.T, mails []testnet.Mail, perConn int, msgRate float64, window time.Duration) int {
	t.Helper()
	perConnCount := map[int]int{}
	times := make([]time.Time, 0, len(mails))
	for _, m := range mails {
		perConnCount[m.Conn]++
		times = append(times, m.Time)
	}
	for c, k := range perConnCount {
		if k > perConn {
			t.Errorf("connection %d carried %d messages > %d", c, k, perConn)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	maxIn, worst := int(msgRate*window.Seconds())+3, 0
	for i, j := 0, 0; i < len(times); i++ {
		for j < len(times) && times[j].Sub(times[i]) < window {
			j++
		}
		worst = max(worst, j-i)
	}
	if worst > maxIn {
		t.Errorf("%d messages within %v at the MX; max_message_rate allows %d", worst, window, maxIn)
	}
	return worst
}

// TestLimitsHoldUnderLoad sends 2,000 messages over real SMTP to three
// domains whose MX hosts share one suffix and checks connection_limit,
// max_deliveries_per_connection and max_message_rate at the MX.
func TestLimitsHoldUnderLoad(t *testing.T) {
	const (
		n       = 2000
		connLim = 3
		perConn = 20
		msgRate = 800.0 // per second
		window  = 250 * time.Millisecond
	)
	w := newWorld(t)
	mx := w.addMX("mx1.bigmail.test", testnet.MXScript{}, "a.test", "b.test", "c.test")
	s, _ := newShaper(t, bigmailRule(connLim, perConn, msgRate, `max_connection_rate = "200/s"`))
	var jobs []job
	for i := range n {
		jobs = append(jobs, job{rcpt: fmt.Sprintf("u%d@%c.test", i, 'a'+i%3), stream: "marketing"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	res := w.send(ctx, s, 8, jobs)
	elapsed := time.Since(start)
	if res.firstErr != nil {
		t.Fatal(res.firstErr)
	}
	if res.delivered != n || mx.Count() != n {
		t.Fatalf("delivered %d, MX got %d, want %d (deferred %d)", res.delivered, mx.Count(), n, res.deferred)
	}
	total, maxConc := mx.Conns()
	if maxConc > connLim {
		t.Errorf("max concurrent connections %d > connection_limit %d", maxConc, connLim)
	}
	if total < n/perConn {
		t.Errorf("%d connections for %d messages: more than %d per connection", total, n, perConn)
	}
	worst := checkMails(t, mx.Mails(), perConn, msgRate, window)
	if min := time.Duration(float64(n-1) / msgRate * float64(time.Second)); elapsed < min*95/100 {
		t.Errorf("2000 messages took %v, faster than max_message_rate allows (%v)", elapsed, min)
	}
	st := s.Status()
	if len(st.Limits) != 1 || st.Limits[0].Key != "bigmail" || st.Limits[0].Stream != "marketing" {
		t.Fatalf("all three domains should share one state: %+v", st.Limits)
	}
	t.Logf("%d msgs in %v over %d connections (max %d concurrent), busiest %v window %d msgs", n, elapsed, total, maxConc, window, worst)
}

// TestAutomationThrottleThenRecover: an MX answering 421 4.7.28 throttles
// the rule's rate to a fraction, and the limits come back by themselves.
func TestAutomationThrottleThenRecover(t *testing.T) {
	w := newWorld(t)
	mx := w.addMX("mx.gmail.test", testnet.MXScript{
		OnRcpt: func(rcpt string, _ int) error {
			if strings.HasPrefix(rcpt, "trigger@") {
				return testnet.Reply(421, "4.7.28", "Gmail has detected an unusual rate of unsolicited mail originating from your IP address")
			}
			return nil
		},
	}, "a.test")
	s, reg := newShaper(t, `
[[shaping.rule]]
name = "gm"
mx_suffixes = [".gmail.test"]
max_message_rate = "100/s"
[[shaping.automation]]
rule = "gm"
enhanced = "4.7.28"
action = "throttle"
factor = 0.1
duration = "1s"
`)
	ctx := context.Background()
	res := w.send(ctx, s, 1, []job{{rcpt: "trigger@a.test"}})
	if res.firstErr != nil || res.rejected != 1 {
		t.Fatalf("trigger: %+v", res)
	}
	st := s.Status()
	if len(st.Actions) != 1 || st.Actions[0].Action != "throttle" || st.Actions[0].Key != "gm" ||
		!strings.Contains(st.Actions[0].Reply, "4.7.28") || time.Until(st.Actions[0].Until) <= 0 {
		t.Fatalf("no throttle after 421 4.7.28: %+v", st.Actions)
	}
	if got := st.Limits[0].MaxMessageRate; got != (config.Rate{Count: 10, Per: time.Second}) {
		t.Fatalf("throttled rate %v, want 10/s", got)
	}
	if v := metricValue(t, reg, "petrel_shaping_actions_total", "throttle"); v != 1 {
		t.Fatalf("petrel_shaping_actions_total{action=throttle} = %v", v)
	}
	// While throttled (10/s): 5 messages are spaced 100ms apart, 400ms
	// in all (unthrottled 40ms); allow 100ms of timestamp jitter.
	before := mx.Count()
	res = w.send(ctx, s, 1, []job{{rcpt: "x1@a.test"}, {rcpt: "x2@a.test"}, {rcpt: "x3@a.test"}, {rcpt: "x4@a.test"}, {rcpt: "x5@a.test"}})
	if res.delivered != 5 {
		t.Fatalf("throttled send: %+v", res)
	}
	ms := mx.Mails()[before:]
	if span := ms[4].Time.Sub(ms[0].Time); span < 300*time.Millisecond {
		t.Fatalf("5 messages within %v while throttled to 10/s", span)
	}
	// Recovery: the action expires by itself and the rate is restored.
	if !testnet.Wait(3*time.Second, func() bool {
		st := s.Status()
		return len(st.Actions) == 0 && st.Limits[0].MaxMessageRate == config.Rate{Count: 100, Per: time.Second}
	}) {
		t.Fatalf("throttle did not expire: %+v", s.Status())
	}
	var jobs []job
	for i := range 20 {
		jobs = append(jobs, job{rcpt: fmt.Sprintf("y%d@a.test", i)})
	}
	start := time.Now()
	res = w.send(ctx, s, 1, jobs)
	if res.delivered != 20 {
		t.Fatalf("after recovery: %+v", res)
	}
	// Throttled, 20 messages would take >= 1.9s; at 100/s about 0.2s.
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("20 messages took %v after recovery: still throttled", el)
	}
	if n := metricValue(t, reg, "petrel_shaping_wait_seconds", "message"); n < 25 {
		t.Fatalf("wait histogram counted %v message waits, want >= 25", n)
	}
}

func TestAutomationSuspendAndBounce(t *testing.T) {
	s, reg := newShaper(t, `
[[shaping.rule]]
name = "ym"
mx_suffixes = [".yahoodns.test"]
[[shaping.automation]]
rule = "ym"
regex = '\[TSS04\]'
action = "suspend"
duration = "300ms"
[[shaping.automation]]
rule = "ym"
code = 554
regex = 'domain gone'
action = "bounce"
duration = "300ms"
`)
	ctx := context.Background()
	d := mta.Dest{Domain: "y.test", MXHost: "mta5.am0.yahoodns.test", Stream: "marketing"}
	other := mta.Dest{Domain: "z.test", MXHost: "mx.other.test", Stream: "marketing"}
	// Non-matching replies do nothing.
	s.Observe(d, "default", 421, "4.7.0", "[TS01] something else")
	s.Observe(d, "default", 550, "5.1.1", "domain gone") // code 550 != 554
	if a := s.Status().Actions; len(a) != 0 {
		t.Fatalf("actions from non-matching replies: %+v", a)
	}
	s.Observe(d, "default", 421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints")
	_, err := s.AcquireConn(ctx, d)
	pe := policyErr(t, err)
	if pe.Bounce || time.Until(pe.Until) <= 0 || time.Until(pe.Until) > 300*time.Millisecond || !strings.Contains(pe.Reason, "TSS04") {
		t.Fatalf("suspend refusal: %+v", pe)
	}
	if pe := policyErr(t, s.AcquireMessage(ctx, d, "default")); pe.Bounce {
		t.Fatalf("AcquireMessage while suspended: %+v", pe)
	}
	if v := metricValue(t, reg, "petrel_shaping_suspended", ""); v != 1 {
		t.Fatalf("petrel_shaping_suspended = %v, want 1", v)
	}
	// Another destination is not affected.
	if p, err := s.AcquireConn(ctx, other); err != nil {
		t.Fatalf("other destination refused: %v", err)
	} else {
		p.Release()
	}
	if !testnet.Wait(2*time.Second, func() bool { return metricValue(t, reg, "petrel_shaping_suspended", "") == 0 }) {
		t.Fatal("suspension did not expire")
	}
	p, err := s.AcquireConn(ctx, d)
	if err != nil {
		t.Fatalf("after suspension: %v", err)
	}
	p.Release()
	if err := s.AcquireMessage(ctx, d, "default"); err != nil {
		t.Fatalf("after suspension: %v", err)
	}

	s.Observe(d, "default", 554, "5.7.1", "the domain gone away")
	if pe := policyErr(t, s.AcquireMessage(ctx, d, "default")); !pe.Bounce {
		t.Fatalf("bounce action: %+v", pe)
	}
	_, err = s.AcquireConn(ctx, d)
	if pe := policyErr(t, err); !pe.Bounce {
		t.Fatalf("bounce action on AcquireConn: %+v", pe)
	}
	st := s.Status()
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"action":"bounce"`) {
		t.Fatalf("status JSON %s, %v", js, err)
	}
	if !testnet.Wait(2*time.Second, func() bool { return s.AcquireMessage(ctx, d, "default") == nil }) {
		t.Fatal("bounce action did not expire")
	}
	if a, b := metricValue(t, reg, "petrel_shaping_actions_total", "suspend"), metricValue(t, reg, "petrel_shaping_actions_total", "bounce"); a != 1 || b != 1 {
		t.Fatalf("actions_total suspend=%v bounce=%v, want 1 and 1", a, b)
	}
}

const streamsConfig = `
[shaping]
streams = { transactional = "tx", marketing = "mkt" }
[[shaping.rule]]
name = "bigmail"
mx_suffixes = [".bigmail.test"]
connection_limit = 2
max_message_rate = "200/s"
[[shaping.automation]]
rule = "bigmail"
regex = 'slow down'
action = "throttle"
factor = 0.05
duration = "5s"
[[shaping.automation]]
rule = "bigmail"
regex = 'go away'
action = "suspend"
duration = "5s"
[[shaping.pool]]
name = "tx"
[[shaping.pool.source]]
name = "tx1"
bind_address = "127.0.0.2"
ehlo = "tx.petrel.test"
[[shaping.pool]]
name = "mkt"
[[shaping.pool.source]]
name = "mkt1"
bind_address = "127.0.0.3"
weight = 1
[[shaping.pool.source]]
name = "mkt2"
bind_address = "127.0.0.4"
weight = 3
`

// TestStreamsIsolated: throttling and suspending marketing does not slow
// or block transactional mail to the same provider.
func TestStreamsIsolated(t *testing.T) {
	w := newWorld(t)
	mx := w.addMX("mx.bigmail.test", testnet.MXScript{}, "a.test")
	s, _ := newShaper(t, streamsConfig)
	ctx := context.Background()
	mkt := mta.Dest{Domain: "a.test", MXHost: "mx.bigmail.test", Stream: "marketing"}
	// Weighted choice among marketing sources: exactly 1:3.
	count := map[string]int{}
	for range 400 {
		p, err := s.AcquireConn(ctx, mkt)
		if err != nil {
			t.Fatal(err)
		}
		count[p.Egress.Name+"@"+p.Egress.LocalIP]++
		p.Release()
	}
	if count["mkt1@127.0.0.3"] != 100 || count["mkt2@127.0.0.4"] != 300 {
		t.Fatalf("weighted pick: %v", count)
	}
	// Throttle marketing on both sources hard, and suspend it on mkt1.
	s.Observe(mkt, "mkt1", 421, "4.7.0", "go away")
	s.Observe(mkt, "mkt2", 421, "4.7.0", "slow down please")
	for range 5 {
		p, err := s.AcquireConn(ctx, mkt)
		if err != nil || p.Egress.Name != "mkt2" {
			t.Fatalf("suspended source mkt1 still picked: %+v %v", p, err)
		}
		p.Release()
	}
	// Marketing on mkt2 is now 10/s: a 30-message batch would take ~3s.
	mktDone := make(chan *result, 1)
	go func() {
		var jobs []job
		for i := range 30 {
			jobs = append(jobs, job{rcpt: fmt.Sprintf("m%d@a.test", i), stream: "marketing"})
		}
		mktDone <- w.send(ctx, s, 2, jobs)
	}()
	var jobs []job
	for i := range 200 {
		jobs = append(jobs, job{rcpt: fmt.Sprintf("t%d@a.test", i), stream: "transactional"})
	}
	start := time.Now()
	res := w.send(ctx, s, 2, jobs)
	txTime := time.Since(start)
	if res.firstErr != nil || res.delivered != 200 || res.deferred != 0 {
		t.Fatalf("transactional: %+v", res)
	}
	for _, p := range res.permits {
		if p.Egress.Name != "tx1" || p.Egress.LocalIP != "127.0.0.2" || p.Egress.EHLO != "tx.petrel.test" {
			t.Fatalf("transactional permit from %+v", p.Egress)
		}
	}
	// 200 messages at 200/s take ~1s; throttled like marketing they would
	// take 20s. Generous bound, only to show transactional is not throttled.
	if txTime > 6*time.Second {
		t.Fatalf("transactional took %v: slowed by marketing's throttle", txTime)
	}
	st := s.Status()
	for _, l := range st.Limits {
		switch l.Source {
		case "tx1":
			if l.ThrottleFactor != 0 || l.Suspended || l.MaxMessageRate.PerSecond() != 200 {
				t.Fatalf("transactional state changed: %+v", l)
			}
		case "mkt2":
			if l.ThrottleFactor != 0.05 || l.MaxMessageRate.PerSecond() != 10 {
				t.Fatalf("marketing mkt2 not throttled: %+v", l)
			}
		case "mkt1":
			if !l.Suspended {
				t.Fatalf("marketing mkt1 not suspended: %+v", l)
			}
		}
	}
	mres := <-mktDone
	if mres.firstErr != nil || mres.delivered != 30 {
		t.Fatalf("marketing: %+v", mres)
	}
	if mx.Count() != 230 {
		t.Fatalf("MX got %d", mx.Count())
	}
	// Suspending the last marketing source refuses marketing entirely.
	s.Observe(mkt, "mkt2", 421, "4.7.0", "go away")
	_, err := s.AcquireConn(ctx, mkt)
	if pe := policyErr(t, err); pe.Bounce {
		t.Fatalf("%+v", pe)
	}
	tx := mta.Dest{Domain: "a.test", MXHost: "mx.bigmail.test", Stream: "transactional"}
	if p, err := s.AcquireConn(ctx, tx); err != nil {
		t.Fatalf("transactional refused: %v", err)
	} else {
		p.Release()
	}
}

// TestWarmupCapDefers: a source's daily cap for a rule defers the excess
// (never bounces) until the next UTC day.
func TestWarmupCapDefers(t *testing.T) {
	today := time.Now().UTC()
	w := newWorld(t)
	mx := w.addMX("mx.bigmail.test", testnet.MXScript{}, "a.test", "b.test")
	s, _ := newShaper(t, fmt.Sprintf(`
[[shaping.rule]]
name = "bigmail"
mx_suffixes = [".bigmail.test"]
max_deliveries_per_connection = 1
[[shaping.pool]]
name = "default"
[[shaping.pool.source]]
name = "new-ip"
warmup = "ramp"
warmup_start = "%s"
[[shaping.pool.source]]
name = "older-ip"
warmup = "ramp"
warmup_start = "%s"
weight = 1
[[shaping.warmup]]
name = "ramp"
caps = { bigmail = [4, 7, 1000], "*" = [2] }
`, today.Format(time.DateOnly), today.AddDate(0, 0, -1).Format(time.DateOnly)))
	var jobs []job
	for i := range 20 {
		jobs = append(jobs, job{rcpt: fmt.Sprintf("w%d@a.test", i)})
	}
	res := w.send(context.Background(), s, 1, jobs)
	if res.firstErr != nil {
		t.Fatal(res.firstErr)
	}
	// Day 1 cap 4 on new-ip + day 2 cap 7 on older-ip.
	if res.delivered != 11 || mx.Count() != 11 || res.bounced != 0 || res.deferred != 9 {
		t.Fatalf("warm-up: %+v, MX %d; want 11 delivered, 9 deferred", res, mx.Count())
	}
	midnight := today.Truncate(24 * time.Hour).Add(24 * time.Hour)
	_, err := s.AcquireConn(context.Background(), mta.Dest{Domain: "b.test", MXHost: "mx.bigmail.test"})
	if pe := policyErr(t, err); pe.Bounce || !pe.Until.Equal(midnight) {
		t.Fatalf("capped AcquireConn: %+v, want deferral until %v", pe, midnight)
	}
	pe := policyErr(t, s.AcquireMessage(context.Background(), mta.Dest{Domain: "b.test", MXHost: "mx.bigmail.test"}, "new-ip"))
	if pe.Bounce || !pe.Until.Equal(midnight) || !strings.Contains(pe.Reason, "warm-up") {
		t.Fatalf("capped AcquireMessage: %+v", pe)
	}
	// Other rules use the "*" caps, counted separately.
	other := mta.Dest{Domain: "elsewhere.test"}
	for i := range 2 {
		if err := s.AcquireMessage(context.Background(), other, "new-ip"); err != nil {
			t.Fatalf("message %d to default rule: %v", i, err)
		}
	}
	policyErr(t, s.AcquireMessage(context.Background(), other, "new-ip"))
	got := map[string]string{}
	for _, w := range s.Status().Warmup {
		got[w.Source+"/"+w.Rule] = fmt.Sprintf("%d/%d", w.Sent, w.Cap)
	}
	want := map[string]string{"new-ip/bigmail": "4/4", "older-ip/bigmail": "7/7", "new-ip/default": "2/2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("warm-up status %v, want %v", got, want)
	}
}

// TestReload: new limits apply to existing state without dropping permits
// already handed out; a bad config changes nothing.
func TestReload(t *testing.T) {
	base := `
[[shaping.rule]]
name = "bigmail"
mx_suffixes = [".bigmail.test"]
connection_limit = %d
max_message_rate = "%s"
`
	s, _ := newShaper(t, fmt.Sprintf(base, 2, "100/s"))
	d := mta.Dest{Domain: "a.test", MXHost: "mx.bigmail.test"}
	ctx := context.Background()
	p1, err := s.AcquireConn(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.AcquireConn(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(parseShaping(t, fmt.Sprintf(base, 1, "5/s"))); err != nil {
		t.Fatal(err)
	}
	short := func() error {
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		p, err := s.AcquireConn(c, d)
		if err == nil {
			p.Release()
		}
		return err
	}
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("over the new limit: %v", err)
	}
	p1.Release()
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("still one in flight with limit 1: %v", err)
	}
	p2.Release()
	if err := short(); err != nil {
		t.Fatalf("after releases: %v", err)
	}
	l := s.Status().Limits[0]
	if l.ConnectionLimit != 1 || l.MaxMessageRate.PerSecond() != 5 || l.ActiveConnections != 0 {
		t.Fatalf("after reload: %+v", l)
	}
	bad := parseShaping(t, ``)
	bad.Automation = append(bad.Automation, config.AutomationRule{Rule: "nope", Code: 421, Action: "suspend", Duration: config.Duration{Duration: time.Minute}})
	if err := s.Reload(bad); err == nil || !strings.Contains(err.Error(), "unknown rule") {
		t.Fatalf("bad reload: %v", err)
	}
	if s.Status().Limits[0].ConnectionLimit != 1 {
		t.Fatal("failed reload changed the rules")
	}
}

func TestMaxWaitDefers(t *testing.T) {
	s, _ := newShaper(t, `
[shaping]
max_wait = "50ms"
[[shaping.rule]]
name = "slow"
domains = ["slow.test"]
max_message_rate = "1/min"
`)
	d := mta.Dest{Domain: "slow.test"}
	ctx := context.Background()
	if err := s.AcquireMessage(ctx, d, "default"); err != nil {
		t.Fatal(err)
	}
	pe := policyErr(t, s.AcquireMessage(ctx, d, "default"))
	if pe.Bounce || time.Until(pe.Until) < 50*time.Second {
		t.Fatalf("want deferral ~1 minute out, got %+v", pe)
	}
	// A full connection limit defers after max_wait instead of pinning
	// the worker.
	s3, _ := newShaper(t, "[shaping]\nmax_wait = \"50ms\"\n[[shaping.rule]]\nname = \"one\"\ndomains = [\"one.test\"]\nconnection_limit = 1\n")
	p, err := s3.AcquireConn(ctx, mta.Dest{Domain: "one.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s3.AcquireConn(ctx, mta.Dest{Domain: "one.test"})
	if pe := policyErr(t, err); pe.Bounce || !strings.Contains(pe.Reason, "connection limit 1") {
		t.Fatalf("full connection limit: %+v", pe)
	}
	p.Release()
	c, cancel := context.WithCancel(ctx)
	cancel()
	s2, _ := newShaper(t, "[[shaping.rule]]\nname = \"r\"\ndomains = [\"r.test\"]\nmax_message_rate = \"2/s\"\n")
	_ = s2.AcquireMessage(ctx, mta.Dest{Domain: "r.test"}, "default")
	if err := s2.AcquireMessage(c, mta.Dest{Domain: "r.test"}, "default"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// FuzzObserve feeds arbitrary remote replies to the automation rules and
// then asks for a connection and a message to the same destination: no
// panic, every answer comes at once (a permit, or a *mta.PolicyError
// deferral: never a wait past max_wait), permits are released so slots do
// not leak, and a destination no reply was about still gets its permit.
func FuzzObserve(f *testing.F) {
	f.Add(421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail")
	f.Add(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred")
	f.Add(550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)")
	f.Add(0, "", "dial tcp: connection refused")
	f.Add(-1, "\x00", "\xff\xfe")
	const maxWait = time.Millisecond // a rate wait longer than this is refused at once: fast execs
	s, err := New(config.ShapingConfig{MaxWait: config.Duration{Duration: maxWait}}, "petrel.test", nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	answers := func(t *testing.T, what string, d mta.Dest, acquire func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := acquire(ctx)
		if took := time.Since(start); took > maxWait+time.Second {
			t.Fatalf("%s %+v took %v (max_wait %v)", what, d, took, maxWait)
		}
		var pe *mta.PolicyError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("%s %+v: %v, want a permit or a *mta.PolicyError", what, d, err)
		}
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		for _, d := range []mta.Dest{{Domain: "gmail.com"}, {Domain: "x.test", MXHost: "mx.yahoodns.net"}, {Domain: "hotmail.com", Stream: "marketing"}} {
			s.Observe(d, "default", code, enhanced, text)
			answers(t, "AcquireConn", d, func(ctx context.Context) error {
				p, err := s.AcquireConn(ctx, d)
				if err == nil {
					if p.Release == nil {
						t.Fatalf("AcquireConn %+v: permit without Release", d)
					}
					p.Release()
				}
				return err
			})
			answers(t, "AcquireMessage", d, func(ctx context.Context) error { return s.AcquireMessage(ctx, d, "default") })
		}
		// A fresh domain each time: the default rule's own connection rate
		// would refuse a domain asked for on every input.
		bystander := mta.Dest{Domain: fmt.Sprintf("untouched%d.test", n.Add(1))}
		p, err := s.AcquireConn(context.Background(), bystander)
		if err != nil {
			t.Fatalf("AcquireConn %+v after replies about other destinations: %v", bystander, err)
		}
		p.Release()
		_ = s.Status()
	})
}

// TestIdleStateEvicted: per-domain state of the default rule does not grow
// without bound; state with a permit out or an action in force stays.
func TestIdleStateEvicted(t *testing.T) {
	s, _ := newShaper(t, `
[[shaping.automation]]
code = 421
action = "suspend"
duration = "1m"
`)
	s.mu.Lock()
	s.sweepMin, s.nextSweep, s.evictAfter = 8, 8, time.Millisecond
	s.mu.Unlock()
	ctx := context.Background()
	held, err := s.AcquireConn(ctx, mta.Dest{Domain: "held.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	s.Observe(mta.Dest{Domain: "suspended.test"}, "default", 421, "", "go away")
	for round := range 5 {
		for i := range 20 {
			if err := s.AcquireMessage(ctx, mta.Dest{Domain: fmt.Sprintf("d%d-%d.test", round, i)}, "default"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Millisecond)
	}
	keys := map[string]bool{}
	for _, l := range s.Status().Limits {
		keys[l.Key] = true
	}
	if len(keys) > 45 {
		t.Fatalf("%d states kept after 100 one-off domains", len(keys))
	}
	if !keys["default:held.test"] || !keys["default:suspended.test"] {
		t.Fatalf("state in use was evicted: %v", keys)
	}
	if pe := policyErr(t, s.AcquireMessage(ctx, mta.Dest{Domain: "suspended.test"}, "default")); pe.Bounce {
		t.Fatal(pe)
	}
}

func TestAutomationThreshold(t *testing.T) {
	tests := []struct {
		name    string
		gaps    []time.Duration // sleep before each matching reply
		wantAct bool
	}{
		{"two within window", []time.Duration{0, 0}, false},
		{"three within window", []time.Duration{0, 0, 0}, true},
		{"three spread beyond window", []time.Duration{0, 0, 250 * time.Millisecond}, false},
		{"old ones expire, then three", []time.Duration{0, 250 * time.Millisecond, 0, 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newShaper(t, `
[[shaping.automation]]
regex = 'Server busy'
action = "suspend"
duration = "1m"
threshold = 3
window = "200ms"
`)
			d := mta.Dest{Domain: "busy.test", Stream: "marketing"}
			for _, g := range tt.gaps {
				time.Sleep(g)
				s.Observe(d, "default", 421, "4.3.2", "Server busy. Please try again later")
			}
			err := s.AcquireMessage(context.Background(), d, "default")
			if got := err != nil; got != tt.wantAct {
				t.Fatalf("suspended = %v (%v), want %v", got, err, tt.wantAct)
			}
		})
	}
}
