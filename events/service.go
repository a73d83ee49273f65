package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// Queue is the part of *queue.Queue the service uses.
type Queue interface {
	Events(ctx context.Context, f queue.EventFilter) ([]queue.Event, error)
	EventsScan(ctx context.Context, f queue.EventFilter) ([]queue.Event, string, error)
	AppendEvents(ctx context.Context, evs []queue.Event) error
	Cursor(name string) (string, error)
	SetCursor(name, seq string) error
	Message(msgID string) (*queue.MessageInfo, error)
}

// Suppressor stores suppressions (*policy.Engine).
type Suppressor interface {
	Suppress(stream, addr string, reason suppress.Reason, source string) error
}

// Shaper is the part of *shaping.Shaper the service uses: it receives the
// asynchronous replies that are about us rather than the recipient (for
// the automation rules), names the egress sources a stream sends from
// under the rules in force, and enforces the stream pauses that the
// alarms decide (the one suspension mechanism is shaping's; the service
// only decides and persists pauses).
type Shaper interface {
	Observe(d mta.Dest, egress string, code int, enhanced, text string)
	Egresses(stream string) []string
	PauseStream(stream, reason string)
	ResumeStream(stream string) bool
}

// Options configure New.
type Options struct {
	// Bounce is the [bounce] section.
	Bounce config.BounceConfig
	// Webhooks are the [[webhooks]] entries (validated).
	Webhooks []config.Webhook
	// Queue is the spool whose events are processed; required.
	Queue Queue
	// Suppressor receives suppressions; required.
	Suppressor Suppressor
	// Rules classify replies and parse reports; nil means
	// bounce.DefaultRules() (the embedded rules.toml).
	Rules *bounce.Rules
	// Shaper receives "about us" asynchronous replies (once per egress
	// source of the stream: a report does not say which one sent) and the
	// stream pauses. nil drops the replies, and a pause is then only
	// recorded (Paused, Stats), not enforced.
	Shaper Shaper
	// Dir is the service's own Pebble store (soft-bounce counts, pauses);
	// required.
	Dir string
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Client posts webhooks; nil means a client with each webhook's timeout.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RetryBase is the first webhook retry delay, doubling up to each
	// webhook's max_backoff; 0 means 1s.
	RetryBase time.Duration
}

// Service runs the feedback handler, suppression rules, webhooks, metrics
// and alarms. Create with New, feed OnEvent from queue.Options.OnEvent,
// then Start; Close stops it.
type Service struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	verp  *bounce.VERP
	m     *metrics
	st    *store
	hooks []*webhook

	metricsCh chan queue.Event
	rulesWake chan struct{}

	mu      sync.Mutex
	win     *windows
	paused  map[string]pauseInfo
	domains map[string]string // msgID -> sending domain cache
	// ipUpTo is the last event the egress IP windows' rebuild examined:
	// only later ones are counted in them from then on.
	ipUpTo string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// rulesCursor is the queue cursor of the suppression-rules loop.
const rulesCursor = "events:rules"

// metricsQueue bounds events waiting for the metrics goroutine: 8,192
// events (~2 MiB) are seconds of the fastest event rate the queue
// reaches on two cores; 65,536 held 15 MiB of live heap for nothing,
// which the GC's target doubled in RSS.
const metricsQueue = 1 << 13

// New opens the service's store and prepares (but does not start) its
// loops.
func New(o Options) (*Service, error) {
	if o.Queue == nil || o.Suppressor == nil || o.Dir == "" {
		return nil, errors.New("events: Queue, Suppressor and Dir are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.Bounce.MarketingStream == "" {
		o.Bounce.MarketingStream = "marketing"
	}
	if o.Bounce.AlarmWindow.Duration <= 0 {
		o.Bounce.AlarmWindow.Duration = 24 * time.Hour
	}
	s := &Service{o: o, log: o.Logger, now: o.Now, m: newMetrics(),
		metricsCh: make(chan queue.Event, metricsQueue), rulesWake: make(chan struct{}, 1),
		win: newWindows(o.Bounce.AlarmWindow.Duration), domains: map[string]string{}}
	if o.Bounce.Domain != "" && o.Bounce.Secret != "" {
		s.verp = &bounce.VERP{Domain: o.Bounce.Domain, Secret: []byte(o.Bounce.Secret)}
	}
	st, err := openStore(o.Dir, o.Logger)
	if err != nil {
		return nil, err
	}
	s.st = st
	fail := func(err error) (*Service, error) {
		st.close()
		return nil, err
	}
	for i, w := range o.Webhooks {
		h, err := newWebhook(s, i, w)
		if err != nil {
			return fail(err)
		}
		s.hooks = append(s.hooks, h)
		s.m.collectorList = append(s.m.collectorList, h.lagGauge())
	}
	if err := s.m.register(o.Registry); err != nil {
		return fail(err)
	}
	if s.paused, err = st.paused(); err != nil {
		return fail(err)
	}
	for name, pi := range s.paused {
		s.enforcePause(name, pi.Reason)
		s.m.paused.WithLabelValues(name).Set(1)
		s.log.Warn("stream is paused (resume with petrelctl streams resume)", "stream", name)
	}
	return s, nil
}

// OnEvent is queue.Options.OnEvent: it hands ev to the metrics goroutine
// and wakes the rules loop and the webhook dispatchers that read events
// of its type. It never blocks.
func (s *Service) OnEvent(ev queue.Event) {
	select {
	case s.metricsCh <- ev:
	default:
		s.m.dropped.Inc()
	}
	// Only loops that read events of this type are woken; the others
	// move their cursors past it on their next page or poll.
	if slices.Contains(ruleTypes, ev.Type) {
		wake(s.rulesWake)
	}
	for _, h := range s.hooks {
		if len(h.types) == 0 || h.types[ev.Type] {
			wake(h.wake)
		}
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Start runs the metrics goroutine (after rebuilding the rate windows from
// the retained events), the rules loop and one dispatcher per webhook.
func (s *Service) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	run := func(f func(context.Context)) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f(ctx)
		}()
	}
	run(s.metricsLoop)
	run(func(ctx context.Context) { s.tail(ctx, rulesCursor, s.rulesWake, time.Time{}, ruleTypes, s.applyPage) })
	for _, h := range s.hooks {
		run(h.run)
	}
}

// Close stops the loops and closes the store. Safe to call more than once.
func (s *Service) Close() error {
	var err error
	s.closed.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		err = s.st.close()
	})
	return err
}

// pollEvery is how often loops look for events without a wake-up (events
// appended by another process, missed wake-ups).
const pollEvery = 2 * time.Second

// tail calls page with successive pages of events of the given types
// (all when empty) after the durable cursor name; the cursor advances to
// the last event page reports done, and past the events of other types
// (never decoded). A cursor never set starts at since (zero: the oldest
// retained event).
func (s *Service) tail(ctx context.Context, name string, wakeC chan struct{}, since time.Time, types []string, page func(context.Context, []queue.Event) (done int, err error)) {
	cur, err := s.o.Queue.Cursor(name)
	if err != nil {
		s.log.Error("read cursor", "cursor", name, "err", err)
	}
	for ctx.Err() == nil {
		f := queue.EventFilter{After: cur, Types: types, Limit: 500}
		if cur == "" {
			f.Since = since
		}
		evs, scanned, err := s.o.Queue.EventsScan(ctx, f)
		next, n := cur, 0
		if err == nil && len(evs) > 0 {
			n, err = page(ctx, evs)
			if n > 0 {
				next = evs[n-1].Seq
			}
		}
		if err == nil && n == len(evs) && scanned != "" {
			next = scanned
		}
		if next != cur {
			cur = next
			if serr := s.o.Queue.SetCursor(name, cur); serr != nil {
				s.log.Error("store cursor", "cursor", name, "err", serr)
			}
			if err == nil && n == len(evs) {
				continue
			}
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("event loop", "cursor", name, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-wakeC:
		case <-time.After(pollEvery):
		}
	}
}

// metricsLoop rebuilds the windows from retained events, then counts
// events from OnEvent.
func (s *Service) metricsLoop(ctx context.Context) {
	upTo := s.rebuild(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.metricsCh:
			// Events the rebuild already put in the windows count only
			// in the counters.
			s.count(ev, true, ev.Seq > upTo)
		}
	}
}

// rebuild fills the rate windows from the events of the last alarm window
// (and the egress IP windows from the longest IP window, rebuildIPs) so
// rates and alarms survive a restart; it returns the last Seq read.
// Counters start at zero.
func (s *Service) rebuild(ctx context.Context) (upTo string) {
	s.rebuildIPs(ctx)
	f := queue.EventFilter{Since: s.now().Add(-s.o.Bounce.AlarmWindow.Duration), Limit: 1000}
	n := 0
	for ctx.Err() == nil {
		evs, err := s.o.Queue.Events(ctx, f)
		if err != nil {
			s.log.Warn("rebuild rates from events", "err", err)
			return upTo
		}
		for _, ev := range evs {
			s.count(ev, false, true)
		}
		n += len(evs)
		if len(evs) > 0 {
			upTo = evs[len(evs)-1].Seq
		}
		if len(evs) < f.Limit {
			break
		}
		f.After = upTo
	}
	s.log.Debug("rates rebuilt from retained events", "events", n)
	return upTo
}

// ipTypes are the event types the egress IP windows count.
var ipTypes = []string{"delivered", "bounced", "complained", "expired"}

// rebuildIPs fills the egress IP windows from the events the longest of
// them spans, decoding only the types they count, and sets ipUpTo to the
// last event it examined: the rest of the rebuild and the live events
// count only later events in the IP windows, so none counts twice.
func (s *Service) rebuildIPs(ctx context.Context) {
	f := queue.EventFilter{Since: s.now().Add(-ipSpans[len(ipSpans)-1]), Types: ipTypes, Limit: 1000}
	defer func() {
		s.mu.Lock()
		s.ipUpTo = f.After
		s.mu.Unlock()
	}()
	for ctx.Err() == nil {
		evs, scanned, err := s.o.Queue.EventsScan(ctx, f)
		if err != nil {
			s.log.Warn("rebuild egress IP rates from events", "err", err)
			return
		}
		if scanned == "" || scanned == f.After {
			return
		}
		s.mu.Lock()
		for _, ev := range evs {
			if ev.Stream != "" {
				s.win.addIP(ev, countsOf(ev))
			}
		}
		s.mu.Unlock()
		f.After = scanned
	}
}

// sendingDomain returns the From domain of msgID (cached).
func (s *Service) sendingDomain(msgID string) string {
	if msgID == "" {
		return ""
	}
	s.mu.Lock()
	d, ok := s.domains[msgID]
	s.mu.Unlock()
	if ok {
		return d
	}
	if info, err := s.o.Queue.Message(msgID); err == nil {
		d = domainOf(info.From)
	}
	s.rememberDomain(msgID, d)
	return d
}

// maxDomainCache bounds the msgID → sending domain cache: a message's
// "received" event fills it, its "delivered" event reads it, so it must
// span the messages in flight between the two (~5 MB at the bound).
const maxDomainCache = 1 << 16

// rememberDomain caches the sending domain of msgID.
func (s *Service) rememberDomain(msgID, dom string) {
	s.mu.Lock()
	if len(s.domains) >= maxDomainCache {
		clear(s.domains)
	}
	s.domains[msgID] = dom
	s.mu.Unlock()
}

// count feeds one event into the counters (live) and the windows (win),
// then re-evaluates the stream's alarms.
func (s *Service) count(ev queue.Event, live, win bool) {
	if ev.Stream == "" {
		return // not a recipient event of a stream
	}
	prov := Provider(ev.RemoteMX, ev.Recipient)
	var dom string
	switch ev.Type {
	case "received":
		if ev.Sender != "" {
			s.rememberDomain(ev.MsgID, domainOf(ev.Sender))
		}
	case "delivered", "complained":
		dom = s.sendingDomain(ev.MsgID)
	}
	if live {
		s.m.messages.WithLabelValues(ev.Type, ev.Stream, prov).Inc()
		switch ev.Type {
		case "bounced":
			s.m.bounces.WithLabelValues(ev.Reason, ev.Stream).Inc()
		case "complained":
			s.m.complaints.WithLabelValues(ev.Stream, dom).Inc()
		}
	}
	if !win {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.win.add(ev, prov, dom, ev.Seq > s.ipUpTo)
	s.evaluateLocked(ev.Stream, dom)
}

// evaluateLocked updates the rate gauges of stream (and sending domain)
// and raises or clears its alarms.
func (s *Service) evaluateLocked(stream, dom string) {
	now := s.now()
	w := s.win.stream[stream]
	if w == nil {
		return
	}
	c := w.sum(now)
	s.m.streamBounce.WithLabelValues(stream).Set(c.bounceRate())
	s.m.streamCompl.WithLabelValues(stream).Set(c.complaintRate())
	if dom != "" {
		if dw := s.win.domain[subKey{stream, dom}]; dw != nil {
			s.m.domainCompl.WithLabelValues(stream, dom).Set(dw.sum(now).complaintRate())
		}
	}
	b := s.o.Bounce
	enough := c.Sent >= int64(b.AlarmMinSample)
	for _, a := range []struct {
		kind      string
		rate, max float64
	}{{"bounce", c.bounceRate(), b.BounceRateAlarm}, {"complaint", c.complaintRate(), b.ComplaintRateAlarm}} {
		k := subKey{stream, a.kind}
		on := enough && a.max > 0 && a.rate > a.max
		if on == s.win.alarms[k] {
			continue
		}
		s.win.alarms[k] = on
		if !on {
			s.m.alarm.WithLabelValues(stream, a.kind).Set(0)
			s.log.Info("stream alarm cleared", "stream", stream, "kind", a.kind, "rate", a.rate)
			continue
		}
		s.m.alarm.WithLabelValues(stream, a.kind).Set(1)
		s.log.Warn("stream alarm: rate over threshold", "stream", stream, "kind", a.kind,
			"rate", a.rate, "threshold", a.max, "sent", c.Sent, "delivered", c.Delivered,
			"bounced", c.Bounced, "complained", c.Complained, "window", b.AlarmWindow.Duration)
		if b.PauseMarketingOnAlarm && stream == b.MarketingStream {
			if _, already := s.paused[stream]; !already {
				s.pauseLocked(stream, fmt.Sprintf("%s rate %.4f over %.4f", a.kind, a.rate, a.max))
			}
		}
	}
}

func (s *Service) pauseLocked(stream, reason string) {
	pi := pauseInfo{Since: s.now().UTC(), Reason: reason}
	if err := s.st.setPaused(stream, &pi); err != nil {
		s.log.Error("persist stream pause (paused until restart only)", "stream", stream, "err", err)
	}
	s.paused[stream] = pi
	s.enforcePause(stream, reason)
	s.m.paused.WithLabelValues(stream).Set(1)
	s.log.Warn("stream paused by alarm: delivery defers its mail until resumed", "stream", stream, "reason", reason)
}

// enforcePause has the shaper refuse stream's mail until Resume.
func (s *Service) enforcePause(stream, reason string) {
	if s.o.Shaper != nil {
		s.o.Shaper.PauseStream(stream, "by alarm ("+reason+"); resume with petrelctl streams resume "+stream)
	}
}

// Resume unpauses stream and forgets its window counts (so the alarm does
// not fire again on the same sample). It reports whether it was paused.
func (s *Service) Resume(stream string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, was := s.paused[stream]
	if err := s.st.setPaused(stream, nil); err != nil {
		return was, err
	}
	delete(s.paused, stream)
	if s.o.Shaper != nil {
		s.o.Shaper.ResumeStream(stream)
	}
	s.win.reset(stream)
	for _, kind := range []string{"bounce", "complaint"} {
		delete(s.win.alarms, subKey{stream, kind})
		s.m.alarm.WithLabelValues(stream, kind).Set(0)
	}
	s.m.paused.WithLabelValues(stream).Set(0)
	if was {
		s.log.Info("stream resumed", "stream", stream)
	}
	return was, nil
}

// Paused reports whether stream is paused and why.
func (s *Service) Paused(stream string) (reason string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pi, ok := s.paused[stream]
	return pi.Reason, ok
}

// Stats returns per-stream, per-provider and per-sending-domain counts and
// rates over the alarm window.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.snapshot(s.now(), s.paused)
}
