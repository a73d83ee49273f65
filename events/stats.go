package events

import (
	"sort"
	"time"

	"github.com/petrel-mta/petrel/queue"
)

// windowBuckets is the resolution of a sliding window.
const windowBuckets = 60

// counts are the event counts of one bucket or window.
type counts struct {
	// Sent is delivery attempts that ended: delivered, bounced by the
	// remote in our session, expired.
	Sent       int64 `json:"sent"`
	Delivered  int64 `json:"delivered"`
	Bounced    int64 `json:"bounced"`
	Complained int64 `json:"complained"`
	Deferred   int64 `json:"deferred"`
}

func (c *counts) add(o counts) {
	c.Sent += o.Sent
	c.Delivered += o.Delivered
	c.Bounced += o.Bounced
	c.Complained += o.Complained
	c.Deferred += o.Deferred
}

// bounceRate is bounced / sent (0 without a sample).
func (c counts) bounceRate() float64 {
	if c.Sent == 0 {
		return 0
	}
	return float64(c.Bounced) / float64(c.Sent)
}

// complaintRate is complained / delivered (0 without a sample).
func (c counts) complaintRate() float64 {
	if c.Delivered == 0 {
		return 0
	}
	return float64(c.Complained) / float64(c.Delivered)
}

// countsOf is what one event adds to a window.
func countsOf(ev queue.Event) counts {
	var c counts
	switch ev.Type {
	case "delivered":
		c.Sent, c.Delivered = 1, 1
	case "bounced":
		c.Bounced = 1
		if ev.Attempt > 0 { // sync: the attempt ended here; async ones were sent (delivered) before
			c.Sent = 1
		}
	case "expired":
		c.Sent = 1
	case "complained":
		c.Complained = 1
	case "deferred":
		c.Deferred = 1
	}
	return c
}

// window is a sliding window of counts in windowBuckets buckets.
type window struct {
	width   time.Duration // of one bucket
	epochs  [windowBuckets]int64
	buckets [windowBuckets]counts
}

func newWindow(span time.Duration) *window {
	return &window{width: max(span/windowBuckets, time.Second)}
}

func (w *window) add(t time.Time, c counts) {
	e := t.UnixNano() / int64(w.width)
	i := e % windowBuckets
	if w.epochs[i] != e {
		if w.epochs[i] > e {
			return // older than the window
		}
		w.epochs[i], w.buckets[i] = e, counts{}
	}
	w.buckets[i].add(c)
}

func (w *window) sum(now time.Time) counts {
	cur := now.UnixNano() / int64(w.width)
	var c counts
	for i, e := range w.epochs {
		if e > cur-windowBuckets && e <= cur {
			c.add(w.buckets[i])
		}
	}
	return c
}

// StreamStats is one stream's counts over the alarm window.
type StreamStats struct {
	Stream string `json:"stream"`
	counts
	BounceRate    float64         `json:"bounce_rate"`
	ComplaintRate float64         `json:"complaint_rate"`
	Alarms        []string        `json:"alarms,omitempty"`
	Paused        bool            `json:"paused"`
	Providers     []ProviderStats `json:"providers"`
	Domains       []DomainStats   `json:"sending_domains,omitempty"`
}

// ProviderStats is one provider's counts within a stream.
type ProviderStats struct {
	Provider string `json:"provider"`
	counts
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
}

// DomainStats is one sending domain's counts within a stream.
type DomainStats struct {
	Domain string `json:"domain"`
	counts
	ComplaintRate float64 `json:"complaint_rate"`
}

// IPStats is one egress IP's counts over one window: messages that left
// from it, its bounces and the complaints about them (a complaint counts
// against the address the complained-about message left from).
type IPStats struct {
	IP string `json:"ip"`
	counts
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
}

// IPWindow is every egress IP's counts over one window.
type IPWindow struct {
	Window string    `json:"window"`
	IPs    []IPStats `json:"ips"`
}

// ipSpans are the windows the egress IPs are counted over.
var ipSpans = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour}

// Stats is GET /api/v1/stats.
type Stats struct {
	Window  string        `json:"window"`
	Streams []StreamStats `json:"streams"`
	// EgressIPs are the egress IPs' counts over 24 h and 7 days (the
	// reputation per IP against the complaint line).
	EgressIPs []IPWindow `json:"egress_ips"`
}

type subKey struct{ stream, name string }

// windows holds every sliding window; guarded by Service.mu.
type windows struct {
	span     time.Duration
	stream   map[string]*window
	provider map[subKey]*window
	domain   map[subKey]*window
	alarms   map[subKey]bool // stream, kind (bounce, complaint)
	// ip holds, per ipSpans entry, each egress IP's window.
	ip []map[string]*window
}

func newWindows(span time.Duration) *windows {
	ws := &windows{span: span, stream: map[string]*window{}, provider: map[subKey]*window{},
		domain: map[subKey]*window{}, alarms: map[subKey]bool{}}
	for range ipSpans {
		ws.ip = append(ws.ip, map[string]*window{})
	}
	return ws
}

// maxIPs bounds the egress IPs counted (a pool has a handful; the bound
// only stops events with arbitrary source addresses growing the maps).
const maxIPs = 1024

// addIP counts ev against its egress IP, in every IP window.
func (ws *windows) addIP(ev queue.Event, c counts) {
	if ev.SourceIP == "" {
		return
	}
	for i, m := range ws.ip {
		w := m[ev.SourceIP]
		if w == nil {
			if len(m) >= maxIPs {
				continue
			}
			w = newWindow(ipSpans[i])
			m[ev.SourceIP] = w
		}
		w.add(ev.Time, c)
	}
}

func (ws *windows) get(m map[subKey]*window, k subKey) *window {
	w := m[k]
	if w == nil {
		w = newWindow(ws.span)
		m[k] = w
	}
	return w
}

// add counts ev, and in the egress IP windows too when ip is set;
// sendDomain may be "".
func (ws *windows) add(ev queue.Event, provider, sendDomain string, ip bool) {
	c := countsOf(ev)
	if c == (counts{}) {
		return
	}
	w := ws.stream[ev.Stream]
	if w == nil {
		w = newWindow(ws.span)
		ws.stream[ev.Stream] = w
	}
	w.add(ev.Time, c)
	ws.get(ws.provider, subKey{ev.Stream, provider}).add(ev.Time, c)
	if sendDomain != "" && (c.Delivered > 0 || c.Complained > 0) {
		ws.get(ws.domain, subKey{ev.Stream, sendDomain}).add(ev.Time, c)
	}
	if ip {
		ws.addIP(ev, c)
	}
}

// reset forgets a stream's counts (after an operator resumed it).
func (ws *windows) reset(stream string) {
	delete(ws.stream, stream)
	for k := range ws.provider {
		if k.stream == stream {
			delete(ws.provider, k)
		}
	}
	for k := range ws.domain {
		if k.stream == stream {
			delete(ws.domain, k)
		}
	}
}

func (ws *windows) snapshot(now time.Time, paused map[string]pauseInfo) Stats {
	st := Stats{Window: ws.span.String(), Streams: []StreamStats{}}
	names := map[string]bool{}
	for s := range ws.stream {
		names[s] = true
	}
	for s := range paused {
		names[s] = true
	}
	for s := range names {
		ss := StreamStats{Stream: s, Providers: []ProviderStats{}}
		if w := ws.stream[s]; w != nil {
			ss.counts = w.sum(now)
		}
		ss.BounceRate, ss.ComplaintRate = ss.bounceRate(), ss.complaintRate()
		_, ss.Paused = paused[s]
		for _, kind := range []string{"bounce", "complaint"} {
			if ws.alarms[subKey{s, kind}] {
				ss.Alarms = append(ss.Alarms, kind)
			}
		}
		for k, w := range ws.provider {
			if k.stream == s {
				c := w.sum(now)
				ss.Providers = append(ss.Providers, ProviderStats{Provider: k.name, counts: c,
					BounceRate: c.bounceRate(), ComplaintRate: c.complaintRate()})
			}
		}
		sort.Slice(ss.Providers, func(i, j int) bool { return ss.Providers[i].Provider < ss.Providers[j].Provider })
		for k, w := range ws.domain {
			if k.stream == s {
				c := w.sum(now)
				ss.Domains = append(ss.Domains, DomainStats{Domain: k.name, counts: c, ComplaintRate: c.complaintRate()})
			}
		}
		sort.Slice(ss.Domains, func(i, j int) bool { return ss.Domains[i].Domain < ss.Domains[j].Domain })
		st.Streams = append(st.Streams, ss)
	}
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].Stream < st.Streams[j].Stream })
	for i, m := range ws.ip {
		iw := IPWindow{Window: ipSpans[i].String(), IPs: []IPStats{}}
		for ip, w := range m {
			c := w.sum(now)
			iw.IPs = append(iw.IPs, IPStats{IP: ip, counts: c, BounceRate: c.bounceRate(), ComplaintRate: c.complaintRate()})
		}
		sort.Slice(iw.IPs, func(a, b int) bool { return iw.IPs[a].IP < iw.IPs[b].IP })
		st.EgressIPs = append(st.EgressIPs, iw)
	}
	return st
}
