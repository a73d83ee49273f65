package tracking

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/internal/poll"
)

// Dimensions the stats are split by besides the campaign.
const (
	// DimProvider is the recipient's mailbox provider (events.Provider:
	// google, outlook, yahoo, apple, qq, 163, ..., other).
	DimProvider = "provider"
	// DimType is the campaign type: the message's stream (marketing,
	// transactional, ...).
	DimType = "type"
)

// Counter names of delivery outcomes, counted from the event log (once
// per message and recipient; deferrals once per attempt).
const (
	CntDelivered  = "delivered"
	CntBounced    = "bounced"
	CntComplained = "complained"
	CntDeferred   = "deferred"
)

// unknown is the dimension value of an engagement or event that does not
// say (a version-1 token, an event without a stream).
const unknown = "unknown"

type dim struct{ name, value string }

func engagementDims(e Engagement) []dim {
	return []dim{{DimProvider, cmpOr(e.Provider, unknown)}, {DimType, cmpOr(e.Stream, unknown)}}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// dimKey is the per-campaign counter of a dimension value.
func dimKey(campaign string, d dim, name string) []byte {
	k := make([]byte, 0, 4+len(campaign)+len(d.name)+len(d.value)+len(name))
	k = append(append(k, 'd'), campaign...)
	k = append(append(append(append(append(append(k, 0), d.name...), 0), d.value...), 0), name...)
	return k
}

// totalKey is the all-campaigns counter of a dimension value.
func totalKey(d dim, name string) []byte {
	k := make([]byte, 0, 3+len(d.name)+len(d.value)+len(name))
	k = append(append(k, 't'), d.name...)
	k = append(append(append(append(k, 0), d.value...), 0), name...)
	return k
}

func incDims(b *pebble.Batch, dims []dim, campaign, name string) error {
	one := binary.AppendVarint(nil, 1)
	for _, d := range dims {
		for _, k := range [][]byte{dimKey(campaign, d, name), totalKey(d, name)} {
			if err := b.Merge(k, one, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// EventReader is the MTA's event log as the stats read it
// (*queue.Queue).
type EventReader interface {
	Events(ctx context.Context, f events.EventFilter) ([]events.Event, error)
}

// EventScanner is an EventReader that filters by type without decoding
// the events it skips and says how far it looked (*queue.Queue).
type EventScanner interface {
	EventsScan(ctx context.Context, f events.EventFilter) ([]events.Event, string, error)
}

// deliveryTypes are the event types the delivery counters read.
var deliveryTypes = []string{"delivered", "bounced", "complained", "deferred"}

// deliveryCursor is the k key holding the Seq of the last event log
// event the delivery counters include.
const deliveryCursor = "events:delivery"

// ApplyDeliveryEvents reads the event log after the stats' cursor and
// counts delivered, bounced, complained and deferred events per campaign,
// per mailbox provider (events.Provider of the event's MX host, else of
// the recipient's domain) and per type (the stream). The counters, a
// marker per counted event and the cursor are one synced batch, so a
// crash repeats nothing, and an event the log holds twice (a redelivery
// after a crash, invariant 2) is counted once. From an EventScanner
// (the queue) only those four types are decoded; the cursor moves past
// the others unread. It returns how many events it counted (1 when it
// only moved past others).
func (l *Log) ApplyDeliveryEvents(ctx context.Context, r EventReader) (int, error) {
	after, err := l.stringCursor(deliveryCursor)
	if err != nil {
		return 0, err
	}
	f := events.EventFilter{After: after, Limit: 1000}
	var evs []events.Event
	scanned := ""
	if sc, ok := r.(EventScanner); ok {
		// Only the delivery types are decoded: opens and clicks, which
		// are most of the log under tracking load, are skipped unread.
		f.Types = deliveryTypes
		evs, scanned, err = sc.EventsScan(ctx, f)
	} else {
		evs, err = r.Events(ctx, f)
	}
	if err != nil {
		return 0, err
	}
	if len(evs) == 0 {
		if scanned == "" || scanned == after {
			return 0, nil
		}
		// Nothing to count in what was scanned: move past it.
		if err := l.db.Set(cursorKey(deliveryCursor), []byte(scanned), pebble.Sync); err != nil {
			return 0, fmt.Errorf("tracking: delivery stats: %w", err)
		}
		return 1, nil
	}
	b := l.db.NewIndexedBatch()
	defer b.Close()
	for _, ev := range evs {
		var name string
		switch ev.Type {
		case "delivered":
			name = CntDelivered
		case "bounced":
			name = CntBounced
		case "complained":
			name = CntComplained
		case "deferred":
			name = CntDeferred
		default:
			continue
		}
		mk := append([]byte{'m'}, ev.Type...)
		mk = append(append(append(append(mk, 0), ev.MsgID...), 0), ev.Recipient...)
		if ev.Type == "deferred" {
			mk = binary.AppendUvarint(append(mk, 0), uint64(ev.Attempt))
		}
		if _, closer, err := b.Get(mk); err == nil {
			closer.Close()
			continue // counted already
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return 0, fmt.Errorf("tracking: delivery stats: %w", err)
		}
		provider, err := providerOf(b, ev)
		if err != nil {
			return 0, err
		}
		if err := b.Set(mk, []byte(provider), nil); err != nil { // a delivered marker remembers the provider
			return 0, err
		}
		hour := uint64(ev.Time.Unix() / 3600)
		for _, k := range [][]byte{counterKey(ev.Campaign, name, 0, false), counterKey(ev.Campaign, name, hour, true)} {
			if err := b.Merge(k, binary.AppendVarint(nil, 1), nil); err != nil {
				return 0, err
			}
		}
		dims := []dim{{DimProvider, provider}, {DimType, cmpOr(ev.Stream, unknown)}}
		if err := incDims(b, dims, ev.Campaign, name); err != nil {
			return 0, err
		}
	}
	last := evs[len(evs)-1].Seq
	if scanned != "" {
		last = scanned // the scan went past the last match
	}
	if err := b.Set(cursorKey(deliveryCursor), []byte(last), nil); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("tracking: delivery stats: %w", err)
	}
	return len(evs), nil
}

// providerOf classifies ev's recipient: by the MX host that answered,
// else (a complaint, an asynchronous bounce) by the provider its
// delivery was counted under, else by the recipient's domain.
func providerOf(b *pebble.Batch, ev events.Event) (string, error) {
	if ev.RemoteMX != "" {
		return events.Provider(ev.RemoteMX, ev.Recipient), nil
	}
	k := append(append(append(append([]byte{'m'}, "delivered\x00"...), ev.MsgID...), 0), ev.Recipient...)
	v, closer, err := b.Get(k)
	if err == nil {
		defer closer.Close()
		if len(v) > 0 {
			return string(v), nil
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return "", fmt.Errorf("tracking: delivery stats: %w", err)
	}
	return events.Provider("", ev.Recipient), nil
}

// FollowDeliveries runs ApplyDeliveryEvents until ctx ends, every
// interval when there is nothing new.
func FollowDeliveries(ctx context.Context, l *Log, r EventReader, interval time.Duration, log *slog.Logger) {
	poll.Run(ctx, interval, nil, log, "count delivery events for the stats", func(ctx context.Context) (int, error) {
		return l.ApplyDeliveryEvents(ctx, r)
	})
}

func (l *Log) stringCursor(name string) (string, error) {
	v, closer, err := l.db.Get(cursorKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("tracking: cursor: %w", err)
	}
	defer closer.Close()
	return string(v), nil
}

// Counts are one slice of the stats: delivery outcomes from the event
// log and engagement from the engagement log, with the rates over them.
// Opens and clicks are human ones; machine ones (privacy-proxy
// prefetches, scanners) are apart and in no rate. Unique counts are
// exact: one marker per (campaign, message, recipient).
type Counts struct {
	Delivered  int64 `json:"delivered"`
	Bounced    int64 `json:"bounced"`
	Complained int64 `json:"complained"`
	Deferred   int64 `json:"deferred"`

	Opens         int64 `json:"opens"`
	UniqueOpens   int64 `json:"unique_opens"`
	MachineOpens  int64 `json:"machine_opens"`
	ProxyOpens    int64 `json:"proxy_opens"`
	Clicks        int64 `json:"clicks"`
	UniqueClicks  int64 `json:"unique_clicks"`
	MachineClicks int64 `json:"machine_clicks"`

	// OpenRate is unique human opens / delivered; ClickRate unique human
	// clicks / delivered; ClickToOpenRate unique clicks / unique opens;
	// BounceRate bounced / (delivered + bounced); ComplaintRate
	// complained / delivered (Gmail and Yahoo's line is 0.003).
	OpenRate        float64 `json:"open_rate"`
	ClickRate       float64 `json:"click_rate"`
	ClickToOpenRate float64 `json:"click_to_open_rate"`
	BounceRate      float64 `json:"bounce_rate"`
	ComplaintRate   float64 `json:"complaint_rate"`
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func countsOf(c map[string]int64) Counts {
	r := Counts{Delivered: c[CntDelivered], Bounced: c[CntBounced], Complained: c[CntComplained], Deferred: c[CntDeferred],
		Opens: c[CntOpens], UniqueOpens: c[CntUniqueOpens], MachineOpens: c[CntOpensMachine], ProxyOpens: c[CntOpensProxy],
		Clicks: c[CntClicks], UniqueClicks: c[CntUniqueClicks], MachineClicks: c[CntClicksMachine]}
	r.OpenRate, r.ClickRate = ratio(r.UniqueOpens, r.Delivered), ratio(r.UniqueClicks, r.Delivered)
	r.ClickToOpenRate = ratio(r.UniqueClicks, r.UniqueOpens)
	r.BounceRate, r.ComplaintRate = ratio(r.Bounced, r.Delivered+r.Bounced), ratio(r.Complained, r.Delivered)
	return r
}

// Slice is the counts of one dimension value.
type Slice struct {
	Value string `json:"value"`
	Counts
}

// sumPrefix reads varint counters under prefix whose keys continue with
// value 0x00 name, grouped by value.
func (l *Log) sumPrefix(prefix []byte) (map[string]map[string]int64, error) {
	upper := append(append([]byte(nil), prefix[:len(prefix)-1]...), prefix[len(prefix)-1]+1)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("tracking: stats: %w", err)
	}
	defer it.Close()
	out := map[string]map[string]int64{}
	for ok := it.First(); ok; ok = it.Next() {
		rest := it.Key()[len(prefix):]
		i := indexZero(rest)
		if i < 0 {
			continue
		}
		n, k := binary.Varint(it.Value())
		if k <= 0 {
			return nil, fmt.Errorf("tracking: corrupt counter %q", it.Key())
		}
		v := string(rest[:i])
		if out[v] == nil {
			out[v] = map[string]int64{}
		}
		out[v][string(rest[i+1:])] = n
	}
	return out, it.Error()
}

func toSlices(m map[string]map[string]int64) []Slice {
	out := make([]Slice, 0, len(m))
	for v, c := range m {
		out = append(out, Slice{Value: v, Counts: countsOf(c)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out
}

// CampaignBy returns campaign's counts split by dimension dim
// (DimProvider or DimType).
func (l *Log) CampaignBy(campaign, dimension string) ([]Slice, error) {
	p := append(append([]byte{'d'}, campaign...), 0)
	p = append(append(p, dimension...), 0)
	m, err := l.sumPrefix(p)
	if err != nil {
		return nil, err
	}
	return toSlices(m), nil
}

// TotalsBy returns the counts of every campaign together split by
// dimension dim.
func (l *Log) TotalsBy(dimension string) ([]Slice, error) {
	m, err := l.sumPrefix(append(append([]byte{'t'}, dimension...), 0))
	if err != nil {
		return nil, err
	}
	return toSlices(m), nil
}

// Totals returns one campaign's counts.
func (l *Log) Totals(campaign string) (Counts, error) {
	st, err := l.CampaignStats(campaign)
	if err != nil {
		return Counts{}, err
	}
	return countsOf(st.Counters), nil
}
