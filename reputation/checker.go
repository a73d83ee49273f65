// Package reputation owns blocklist monitoring: it checks every egress IP
// and sending domain (and the domains of tracking links) against the
// configured DNS blocklists (RFC 5782 DNSBLs and domain lists), on a
// schedule and on demand, keeps the latest result of each (target, list)
// for the stats API, counts checks and listings in metrics, appends a
// "blocklisted" / "delisted" event to the event log when a target's
// state changes (webhooks follow the log), raises an alarm gauge, and,
// when configured, pauses the streams that send from a listed egress
// IP's pool through policy/shaping (ARCHITECTURE.md "Suspension"; it
// resumes them once every listing of the pool is gone).
//
// It is a layer-4 stage beside events: policy is asked and never asks,
// so a periodic checker cannot live in policy. Return codes are read per
// list: a 127.0.0.0/8 answer is a listing (meaning from the list's code
// table), the list's refusal codes (Spamhaus 127.255.255.0/24, DBL
// 127.0.1.255, SURBL 127.0.0.1) never count as one, NXDOMAIN is clean.
package reputation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/queue"
)

// Target is one thing to check: an egress IP (KindIP) or a sending or
// tracking domain (KindDomain). Streams are the streams that send from
// it, which a listing pauses when Options.PauseOnListing is set (egress
// IPs: the streams of its pool).
type Target struct {
	Kind    Kind     `json:"kind"`
	Value   string   `json:"target"`
	Streams []string `json:"streams,omitempty"`
}

// Result is the latest check of one target on one list.
type Result struct {
	Kind     Kind      `json:"kind"`
	Target   string    `json:"target"`
	List     string    `json:"list"`
	Zone     string    `json:"zone"`
	Listed   bool      `json:"listed"`
	Codes    []string  `json:"codes,omitempty"`
	Meanings []string  `json:"meanings,omitempty"`
	Refused  bool      `json:"refused,omitempty"`
	Error    string    `json:"error,omitempty"`
	Checked  time.Time `json:"checked"`
	// Since is when the current listing was first seen.
	Since time.Time `json:"since,omitzero"`
}

// Resolver is the A lookup the checker needs (*dns.Resolver has it): an
// error wrapping dns.ErrNoSuchDomain means "not listed".
type Resolver interface {
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
}

// EventLog receives the blocklisted / delisted events (*queue.Queue).
type EventLog interface {
	AppendEvents(ctx context.Context, evs []queue.Event) error
}

// Pauser stops and resumes streams (*shaping.Shaper).
type Pauser interface {
	PauseStream(stream, reason string)
	ResumeStream(stream string) bool
}

// Options configure a Checker. Lists, Resolver and Targets are required.
type Options struct {
	Lists    []List
	Resolver Resolver
	// Targets returns what to check now (egress IPs, sending domains,
	// tracking domains); called at each check, so a reload is seen.
	Targets func() []Target
	// Interval between scheduled checks (Run); 0 means 1 hour.
	Interval time.Duration
	// Timeout bounds each query; 0 means 5 s.
	Timeout time.Duration
	// PauseOnListing pauses a listed target's Streams through Pauser.
	PauseOnListing bool
	Pauser         Pauser
	Events         EventLog
	Logger         *slog.Logger
	Now            func() time.Time
}

// Checker checks targets against blocklists; safe for concurrent use.
type Checker struct {
	o Options

	checkMu sync.Mutex // one check at a time
	mu      sync.Mutex
	results map[string]Result // by key(target, list)
	paused  map[string]bool   // streams this checker paused

	checks   *prometheus.CounterVec
	listings *prometheus.CounterVec
	listed   *prometheus.GaugeVec
	alarm    prometheus.Gauge
	last     prometheus.Gauge
}

// New returns a Checker; it checks nothing until Check or Run.
func New(o Options) (*Checker, error) {
	if o.Resolver == nil || o.Targets == nil {
		return nil, errors.New("reputation: Resolver and Targets are required")
	}
	for _, l := range o.Lists {
		if l.Name == "" || l.Zone == "" || (l.Kind != KindIP && l.Kind != KindDomain) {
			return nil, fmt.Errorf("reputation: list %q: needs name, zone and kind ip|domain", l.Name)
		}
	}
	if o.Interval <= 0 {
		o.Interval = time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Checker{o: o, results: map[string]Result{}, paused: map[string]bool{},
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_reputation_checks_total",
			Help: "Blocklist queries by list and result (clean, listed, refused, error)."}, []string{"list", "result"}),
		listings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_reputation_listings_total",
			Help: "New blocklist listings seen, by list and target kind."}, []string{"list", "kind"}),
		listed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_reputation_listed",
			Help: "1 while the target is listed on the list."}, []string{"list", "kind", "target"}),
		alarm: prometheus.NewGauge(prometheus.GaugeOpts{Name: "petrel_reputation_alarm",
			Help: "Number of (target, list) listings in force; above 0 is an alarm."}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "petrel_reputation_last_check_timestamp_seconds",
			Help: "Unix time of the last completed blocklist check."}),
	}, nil
}

// Register adds the checker's metrics to reg.
func (c *Checker) Register(reg prometheus.Registerer) error {
	for _, m := range []prometheus.Collector{c.checks, c.listings, c.listed, c.alarm, c.last} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("reputation: metrics: %w", err)
		}
	}
	return nil
}

func key(kind Kind, target, list string) string { return string(kind) + " " + target + " " + list }

// Run checks at once and then every Interval until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		if _, err := c.Check(ctx); err != nil && ctx.Err() == nil {
			c.o.Logger.Warn("reputation: check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check queries every target on every list of its kind now, records the
// results, and acts on changes (events, metrics, alarm, pause/resume). It
// returns this check's results, listed ones first.
func (c *Checker) Check(ctx context.Context) ([]Result, error) {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	targets := c.o.Targets()
	type job struct {
		t Target
		l List
	}
	var jobs []job
	seen := map[string]bool{}
	for _, t := range targets {
		for _, l := range c.o.Lists {
			if l.Kind == t.Kind && !seen[key(t.Kind, t.Value, l.Name)] {
				seen[key(t.Kind, t.Value, l.Name)] = true
				jobs = append(jobs, job{t, l})
			}
		}
	}
	out := make([]Result, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // queries in flight
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = c.query(ctx, j.t, j.l)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var events []queue.Event
	c.mu.Lock()
	for i, r := range out {
		k := key(r.Kind, r.Target, r.List)
		prev, had := c.results[k]
		if r.Error != "" || r.Refused {
			// No answer: the previous state stands.
			r.Listed, r.Codes, r.Meanings, r.Since = prev.Listed, prev.Codes, prev.Meanings, prev.Since
		}
		switch {
		case r.Listed && !prev.Listed:
			r.Since = r.Checked
			c.listings.WithLabelValues(r.List, string(r.Kind)).Inc()
			c.o.Logger.Warn("reputation: target is blocklisted", "kind", r.Kind, "target", r.Target,
				"list", r.List, "codes", r.Codes, "meaning", r.Meanings)
			events = append(events, queue.Event{Type: "blocklisted", Reason: describe(r), Reply: strings.Join(r.Codes, ",")})
		case !r.Listed && prev.Listed:
			c.o.Logger.Info("reputation: target is no longer blocklisted", "kind", r.Kind, "target", r.Target, "list", r.List)
			events = append(events, queue.Event{Type: "delisted", Reason: describe(r)})
		case r.Listed:
			r.Since = prev.Since
		}
		if r.Listed {
			c.listed.WithLabelValues(r.List, string(r.Kind), r.Target).Set(1)
		} else if had {
			c.listed.WithLabelValues(r.List, string(r.Kind), r.Target).Set(0)
		}
		c.results[k] = r
		out[i] = r
	}
	// Results of targets no longer configured are dropped.
	for k, r := range c.results {
		if !seen[k] {
			delete(c.results, k)
			c.listed.DeleteLabelValues(r.List, string(r.Kind), r.Target)
		}
	}
	n := 0
	for _, r := range c.results {
		if r.Listed {
			n++
		}
	}
	c.alarm.Set(float64(n))
	c.last.Set(float64(c.o.Now().Unix()))
	c.updatePauses(targets)
	c.mu.Unlock()
	if len(events) > 0 && c.o.Events != nil {
		if err := c.o.Events.AppendEvents(ctx, events); err != nil {
			return out, fmt.Errorf("reputation: events: %w", err)
		}
	}
	sortResults(out)
	return out, nil
}

// describe is an event's Reason: "spamhaus-zen: ip 192.0.2.1 listed (127.0.0.2 SBL: ...)".
func describe(r Result) string {
	s := fmt.Sprintf("%s: %s %s", r.List, r.Kind, r.Target)
	if !r.Listed {
		return s + " not listed"
	}
	var parts []string
	for i, c := range r.Codes {
		parts = append(parts, c+" "+r.Meanings[i])
	}
	return s + " listed (" + strings.Join(parts, "; ") + ")"
}

// updatePauses pauses the streams of listed targets and resumes the ones
// this checker paused once none of their targets is listed; c.mu is held.
func (c *Checker) updatePauses(targets []Target) {
	if !c.o.PauseOnListing || c.o.Pauser == nil {
		return
	}
	want := map[string]string{} // stream -> reason
	for _, t := range targets {
		for _, l := range c.o.Lists {
			if r, ok := c.results[key(t.Kind, t.Value, l.Name)]; ok && r.Listed {
				for _, s := range t.Streams {
					if _, dup := want[s]; !dup {
						want[s] = "by blocklist " + describe(r)
					}
				}
			}
		}
	}
	for s, why := range want {
		if !c.paused[s] {
			c.o.Pauser.PauseStream(s, why)
			c.paused[s] = true
			c.o.Logger.Warn("reputation: stream paused: its egress is blocklisted", "stream", s, "why", why)
		}
	}
	for s := range c.paused {
		if _, still := want[s]; !still {
			c.o.Pauser.ResumeStream(s)
			delete(c.paused, s)
			c.o.Logger.Info("reputation: stream resumed: no listing left", "stream", s)
		}
	}
}

// query runs one lookup.
func (c *Checker) query(ctx context.Context, t Target, l List) Result {
	r := Result{Kind: t.Kind, Target: t.Value, List: l.Name, Zone: l.Zone, Checked: c.o.Now()}
	name, err := l.query(t.Value)
	if err != nil {
		r.Error = err.Error()
		c.checks.WithLabelValues(l.Name, "error").Inc()
		return r
	}
	qctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	ips, err := c.o.Resolver.LookupA(qctx, name)
	switch {
	case errors.Is(err, dns.ErrNoSuchDomain):
		c.checks.WithLabelValues(l.Name, "clean").Inc()
		return r
	case err != nil:
		r.Error = err.Error()
		c.checks.WithLabelValues(l.Name, "error").Inc()
		return r
	}
	codes, meanings, refused, odd := l.read(ips)
	r.Codes, r.Meanings, r.Listed = codes, meanings, len(codes) > 0
	switch {
	case r.Listed:
		c.checks.WithLabelValues(l.Name, "listed").Inc()
	case refused:
		r.Refused = true
		r.Error = "the list refused the query (" + joinAddrs(ips) + "): check its usage terms and your resolver"
		c.checks.WithLabelValues(l.Name, "refused").Inc()
		c.o.Logger.Warn("reputation: blocklist refused the query", "list", l.Name, "answer", joinAddrs(ips))
	case len(odd) > 0:
		r.Error = "answer outside 127.0.0.0/8 (" + strings.Join(odd, ",") + "): a resolver rewriting NXDOMAIN?"
		c.checks.WithLabelValues(l.Name, "error").Inc()
	default:
		c.checks.WithLabelValues(l.Name, "clean").Inc()
	}
	return r
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, a := range ips {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Results returns the latest result of every (target, list), listed ones
// first.
func (c *Checker) Results() []Result {
	c.mu.Lock()
	out := make([]Result, 0, len(c.results))
	for _, r := range c.results {
		out = append(out, r)
	}
	c.mu.Unlock()
	sortResults(out)
	return out
}

func sortResults(rs []Result) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Listed != b.Listed {
			return a.Listed
		}
		return slices.Compare([]string{string(a.Kind), a.Target, a.List}, []string{string(b.Kind), b.Target, b.List}) < 0
	})
}
