package tracking

// The engagement log: opens and clicks are high volume, so they are not
// synced spool writes per request (ARCHITECTURE.md, ESP layer). Record
// hands an engagement to one writer goroutine, which commits whatever has
// arrived as one unsynced Pebble batch and syncs the WAL every
// SyncInterval: at most SyncInterval of engagements is at risk on power
// loss; Close (SIGTERM) commits and syncs everything first, so none is
// lost on a clean stop. The same batch updates the aggregates, so stats
// never scan the log.
//
// Keyspace (one Pebble DB, e.g. <data_dir>/engagement):
//
//	e  seq (uint64 BE)                               Engagement (record.go; JSON before v1)
//	u  kind, campaign 0x00 message 0x00 recipient     empty: first human open/click seen (unique)
//	U  kind, campaign 0x00 message 0x00 recipient     empty: first open/click of any kind seen
//	c  campaign 0x00 counter name [0x00 hour BE]      varint sum (merge operator)
//	d  campaign 0x00 dim 0x00 value 0x00 counter      varint sum: per campaign and provider / type
//	t  dim 0x00 value 0x00 counter                    varint sum: per provider / type, all campaigns
//	m  event type 0x00 message 0x00 recipient [0x00 attempt]  empty: delivery event counted (dims.go)
//	k  cursor name                                   last seq a consumer handled (the event
//	                                                 log's cursor "events:delivery" is its Seq string)

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// ErrLogClosed is returned after Close.
var ErrLogClosed = errors.New("tracking: engagement log closed")

// LogOptions configure OpenLog.
type LogOptions struct {
	// SyncInterval bounds what a power loss can take (default 1s).
	SyncInterval time.Duration
	// Buffer is how many engagements may wait for the writer (default
	// 65536); Record blocks (up to its ctx) when it is full.
	Buffer int
	Logger *slog.Logger
}

// Log is the engagement log and its aggregates. It implements Recorder.
type Log struct {
	db       *pebble.DB
	in       chan Engagement
	log      *slog.Logger
	interval time.Duration
	done     chan struct{}
	closeMu  sync.RWMutex
	closed   bool
	seq      uint64
	// flushReq asks the writer to commit and sync now (Flush).
	flushReq chan chan error
	// group is the writer's reusable commit state.
	group *group
	// groups counts the group commits that wrote engagements.
	groups atomic.Int64
}

// OpenLog opens (creating) the engagement log in dir.
func OpenLog(dir string, o LogOptions) (*Log, error) {
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Buffer <= 0 {
		o.Buffer = 1 << 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// The unique-marker Gets are mostly misses: bloom filters, and a
	// block cache big enough to keep the filter and index blocks of the
	// tables (the 8 MiB default made every other Get a pread).
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	po := &pebble.Options{Merger: sumMerge(), Logger: quietPebble{}, Cache: cache, MemTableSize: 16 << 20}
	po.Levels = make([]pebble.LevelOptions, 7)
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, po.EnsureDefaults())
	if err != nil {
		return nil, fmt.Errorf("tracking: open engagement log: %w", err)
	}
	l := &Log{db: db, in: make(chan Engagement, o.Buffer), log: o.Logger, interval: o.SyncInterval,
		done: make(chan struct{}), flushReq: make(chan chan error),
		group: &group{deltas: map[string]*int64{}, markers: map[string]bool{}}}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'e'}, UpperBound: []byte{'f'}})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("tracking: open engagement log: %w", err)
	}
	if it.Last() && len(it.Key()) == 9 {
		l.seq = binary.BigEndian.Uint64(it.Key()[1:])
	}
	it.Close()
	go l.run()
	return l, nil
}

// Record queues e for the next group commit. It blocks only while the
// buffer is full, until ctx ends (then e is dropped and logged).
func (l *Log) Record(ctx context.Context, e Engagement) {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.in <- e: // room in the buffer: never let a done ctx win the race
		return
	default:
	}
	select {
	case l.in <- e:
	case <-ctx.Done():
		l.log.Warn("engagement dropped: log buffer full", "kind", string(e.Kind), "campaign", e.Campaign)
	}
}

// TryRecord queues e for the next group commit when the buffer has room
// and reports whether it did; it never blocks. After Close it drops e
// and reports true.
func (l *Log) TryRecord(e Engagement) bool {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return true
	}
	select {
	case l.in <- e:
		return true
	default:
		return false
	}
}

// Flush commits and syncs everything recorded so far.
func (l *Log) Flush() error {
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return ErrLogClosed
	}
	ch := make(chan error, 1)
	l.flushReq <- ch
	l.closeMu.RUnlock()
	return <-ch
}

// Close commits and syncs everything recorded, then closes the store.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.in)
	l.closeMu.Unlock()
	<-l.done
	return l.db.Close()
}

// groupWait is how long the writer lets engagements gather after a
// group commit that did not fill maxGroup, before it takes the next
// group. Committing on every arrival (as before) made groups of one to
// three engagements under load: each a Pebble batch with its own ~18
// counter merges and a wake-up of the writer per request, background CPU
// that request goroutines queued behind (the pixel's p99). Gathering
// for groupWait makes one group of every ~groupWait of traffic; the sync
// ticker runs groupWait early, so what a power loss can take stays
// within SyncInterval.
const groupWait = 10 * time.Millisecond

func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(max(l.interval-groupWait, groupWait))
	defer tick.Stop()
	dirty := false
	for {
		select {
		case e, ok := <-l.in:
			if !ok {
				if err := l.commit(nil, true); err != nil {
					l.log.Error("engagement log: final commit", "err", err)
				}
				return
			}
			n, err := l.commitGroup(&e, false)
			if err != nil {
				l.log.Error("engagement log: commit", "err", err)
			}
			dirty = true
			if n < maxGroup {
				// Let the next group gather; a Flush or Close waits
				// at most groupWait longer.
				time.Sleep(groupWait)
			}
		case <-tick.C:
			if dirty {
				if err := l.db.LogData(nil, pebble.Sync); err != nil {
					l.log.Error("engagement log: sync", "err", err)
				}
				dirty = false
			}
		case ch := <-l.flushReq:
			ch <- l.commit(nil, true)
			dirty = false
		}
	}
}

// commit writes first (if not nil) and whatever else is waiting (up to
// maxGroup) as one batch; sync makes it durable now.
func (l *Log) commit(first *Engagement, sync bool) error {
	_, err := l.commitGroup(first, sync)
	return err
}

// commitGroup is commit, also returning how many engagements it wrote.
func (l *Log) commitGroup(first *Engagement, sync bool) (int, error) {
	g := l.group
	g.reset(l.db)
	defer g.b.Close()
	n := 0
	if first != nil {
		if err := l.apply(g, first); err != nil {
			return 0, err
		}
		n++
	}
drain:
	for n < maxGroup {
		select {
		case e, ok := <-l.in:
			if !ok {
				sync = true
				break drain
			}
			if err := l.apply(g, &e); err != nil {
				return n, err
			}
			n++
		default:
			break drain
		}
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if n == 0 && !sync {
		return 0, nil
	}
	if n == 0 {
		return 0, l.db.LogData(nil, pebble.Sync)
	}
	if err := g.flushCounters(); err != nil {
		return n, err
	}
	l.groups.Add(1)
	return n, g.b.Commit(opts)
}

// maxGroup bounds one group commit.
const maxGroup = 4096

// group is one commit's batch and what it has learnt: counter deltas are
// summed in memory and written as one merge per distinct counter (a
// thousand opens of one campaign are a few merges, not thousands), and
// unique markers already looked up (or set) in this group are not looked
// up again. The writer goroutine reuses one group.
type group struct {
	db      *pebble.DB
	b       *pebble.Batch
	deltas  map[string]*int64
	markers map[string]bool // marker key → exists (committed, or set in this group)
	key     []byte          // scratch
	val     []byte          // scratch
}

func (g *group) reset(db *pebble.DB) {
	g.db, g.b = db, db.NewBatch()
	clear(g.deltas)
	clear(g.markers)
}

// add counts one increment of the counter key k.
func (g *group) add(k []byte) {
	if p, ok := g.deltas[string(k)]; ok {
		*p++
		return
	}
	v := int64(1)
	g.deltas[string(k)] = &v
}

// inc counts one of counter name for campaign: the total, the hour, and
// per dimension value (per campaign and over all campaigns).
func (g *group) inc(campaign, name string, hour uint64, dims []dim) {
	k := append(append(append(append(g.key[:0], 'c'), campaign...), 0), name...)
	g.add(k)
	k = binary.BigEndian.AppendUint64(append(k, 0), hour)
	g.add(k)
	for _, d := range dims {
		k = append(append(append(append(append(append(append(append(k[:0], 'd'), campaign...), 0), d.name...), 0), d.value...), 0), name...)
		g.add(k)
		k = append(append(append(append(append(append(k[:0], 't'), d.name...), 0), d.value...), 0), name...)
		g.add(k)
	}
	g.key = k
}

// first reports whether the unique marker (prefix, kind, campaign,
// message, recipient) is new, and sets it when it is.
func (g *group) first(prefix byte, e *Engagement) (bool, error) {
	k := append(append(g.key[:0], prefix, byte(e.Kind)), e.Campaign...)
	k = append(append(append(append(k, 0), e.Message...), 0), e.Recipient...)
	g.key = k
	if exists, ok := g.markers[string(k)]; ok {
		if exists {
			return false, nil
		}
	} else {
		_, closer, err := g.db.Get(k) // bloom filters: a miss rarely reads a block
		if err == nil {
			closer.Close()
			g.markers[string(k)] = true
			return false, nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return false, err
		}
	}
	g.markers[string(k)] = true
	return true, g.b.Set(k, nil, nil)
}

// flushCounters writes the summed deltas into the batch.
func (g *group) flushCounters() error {
	for k, v := range g.deltas {
		g.val = binary.AppendVarint(g.val[:0], *v)
		if err := g.b.Merge([]byte(k), g.val, nil); err != nil {
			return err
		}
	}
	return nil
}

// Counter names of the aggregates.
const (
	CntOpens           = "opens"
	CntOpensMachine    = "opens_machine"
	CntUniqueOpens     = "unique_opens" // human
	CntUniqueOpensAny  = "unique_opens_any"
	CntClicks          = "clicks"
	CntClicksMachine   = "clicks_machine"
	CntUniqueClicks    = "unique_clicks" // human
	CntUniqueClicksAny = "unique_clicks_any"
	cntLinkPrefix      = "link:"       // clicks per link index (human)
	CntOpensProxy      = "opens_proxy" // human opens fetched through an image proxy
)

func (l *Log) apply(g *group, e *Engagement) error {
	l.seq++
	g.val = appendRecord(g.val[:0], e)
	if err := g.b.Set(binary.BigEndian.AppendUint64(append(g.key[:0], 'e'), l.seq), g.val, nil); err != nil {
		return err
	}
	hour := uint64(e.Time.Unix() / 3600)
	dims := [2]dim{{DimProvider, cmpOr(e.Provider, unknown)}, {DimType, cmpOr(e.Stream, unknown)}}
	total, machine, uniq, uniqAny := CntOpens, CntOpensMachine, CntUniqueOpens, CntUniqueOpensAny
	if e.Kind == Click {
		total, machine, uniq, uniqAny = CntClicks, CntClicksMachine, CntUniqueClicks, CntUniqueClicksAny
	}
	name := total
	if e.Machine {
		name = machine
	}
	g.inc(e.Campaign, name, hour, dims[:])
	if ok, err := g.first('U', e); err != nil {
		return err
	} else if ok {
		g.inc(e.Campaign, uniqAny, hour, dims[:])
	}
	if e.Machine {
		return nil
	}
	if e.Proxy != "" {
		g.inc(e.Campaign, CntOpensProxy, hour, dims[:])
	}
	if e.Kind == Click {
		g.inc(e.Campaign, cntLinkPrefix+strconv.Itoa(e.Link), hour, dims[:])
	}
	if ok, err := g.first('u', e); err != nil {
		return err
	} else if ok {
		g.inc(e.Campaign, uniq, hour, dims[:])
	}
	return nil
}

func counterKey(campaign, name string, hour uint64, hourly bool) []byte {
	k := make([]byte, 0, 12+len(campaign)+len(name))
	k = append(k, 'c')
	k = append(append(append(k, campaign...), 0), name...)
	if hourly {
		k = append(k, 0)
		k = binary.BigEndian.AppendUint64(k, hour)
	}
	return k
}

// Stats are a campaign's engagement totals.
type Stats struct {
	Campaign string           `json:"campaign"`
	Counters map[string]int64 `json:"counters"`
	// Links are human clicks per link index.
	Links map[int]int64 `json:"links,omitempty"`
}

// CampaignStats returns the totals of campaign (committed engagements;
// call Flush first to include those still in the buffer).
func (l *Log) CampaignStats(campaign string) (Stats, error) {
	lower := append(append([]byte{'c'}, campaign...), 0)
	upper := append(append([]byte{'c'}, campaign...), 1)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return Stats{}, fmt.Errorf("tracking: stats: %w", err)
	}
	defer it.Close()
	st := Stats{Campaign: campaign, Counters: map[string]int64{}}
	for ok := it.First(); ok; ok = it.Next() {
		name := it.Key()[len(lower):]
		if i := indexZero(name); i >= 0 {
			continue // hourly series
		}
		n, k := binary.Varint(it.Value())
		if k <= 0 {
			return Stats{}, fmt.Errorf("tracking: corrupt counter %q", it.Key())
		}
		if s := string(name); len(s) > len(cntLinkPrefix) && s[:len(cntLinkPrefix)] == cntLinkPrefix {
			idx, err := strconv.Atoi(s[len(cntLinkPrefix):])
			if err == nil {
				if st.Links == nil {
					st.Links = map[int]int64{}
				}
				st.Links[idx] = n
			}
			continue
		}
		st.Counters[string(name)] = n
	}
	return st, it.Error()
}

// Hourly returns counter name of campaign per hour (unix hour → count).
func (l *Log) Hourly(campaign, name string) (map[int64]int64, error) {
	lower := append(append(append(append([]byte{'c'}, campaign...), 0), name...), 0)
	upper := append(append(append(append([]byte{'c'}, campaign...), 0), name...), 1)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("tracking: hourly: %w", err)
	}
	defer it.Close()
	out := map[int64]int64{}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(lower):]
		if len(k) != 8 {
			continue
		}
		n, _ := binary.Varint(it.Value())
		out[int64(binary.BigEndian.Uint64(k))*3600] = n
	}
	return out, it.Error()
}

// Read returns up to limit engagements after seq (0: from the start),
// with the seq of the last one, for consumers keeping their own cursor.
func (l *Log) Read(after uint64, limit int) ([]Engagement, uint64, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	lower := append([]byte{'e'}, binary.BigEndian.AppendUint64(nil, after+1)...)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{'f'}})
	if err != nil {
		return nil, after, fmt.Errorf("tracking: read: %w", err)
	}
	defer it.Close()
	var out []Engagement
	last := after
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		e, err := decodeRecord(it.Value())
		if err != nil {
			return nil, after, fmt.Errorf("tracking: corrupt engagement %x: %w", it.Key(), err)
		}
		out = append(out, e)
		last = binary.BigEndian.Uint64(it.Key()[1:])
	}
	return out, last, it.Error()
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// sumMerge adds varint deltas (the aggregates' counters).
func sumMerge() *pebble.Merger {
	return &pebble.Merger{
		Name: "petrel.tracking.sum.v1",
		Merge: func(key, value []byte) (pebble.ValueMerger, error) {
			m := &sum{}
			return m, m.MergeNewer(value)
		},
	}
}

type sum struct{ v int64 }

func (m *sum) MergeNewer(value []byte) error {
	n, k := binary.Varint(value)
	if k <= 0 || k != len(value) {
		return fmt.Errorf("tracking: corrupt counter value %x", value)
	}
	m.v += n
	return nil
}

func (m *sum) MergeOlder(value []byte) error { return m.MergeNewer(value) }

func (m *sum) Finish(bool) ([]byte, io.Closer, error) { return binary.AppendVarint(nil, m.v), nil, nil }

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// cursorKey is the k key holding a consumer's last handled seq.
func cursorKey(name string) []byte { return append([]byte{'k'}, name...) }

// Cursor returns consumer name's last handled seq (0 if none).
func (l *Log) Cursor(name string) (uint64, error) {
	v, closer, err := l.db.Get(cursorKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tracking: cursor: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("tracking: corrupt cursor %q", name)
	}
	return binary.BigEndian.Uint64(v), nil
}

// SetCursor records that consumer name handled everything up to seq.
func (l *Log) SetCursor(name string, seq uint64) error {
	if err := l.db.Set(cursorKey(name), binary.BigEndian.AppendUint64(nil, seq), pebble.Sync); err != nil {
		return fmt.Errorf("tracking: set cursor: %w", err)
	}
	return nil
}
