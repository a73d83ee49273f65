package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"

	"github.com/petrel-mta/petrel/mta"
)

// Defaults for zero Options fields.
const (
	DefaultReadyLimit     = 10000
	DefaultMaxBatchRcpts  = 100
	DefaultMaxLifetime    = 5 * 24 * time.Hour
	DefaultEventRetention = 7 * 24 * time.Hour
	DefaultScanInterval   = time.Second
)

// DefaultRetrySchedule is DESIGN.md's schedule: 1m, 5m, 15m, 30m, 1h, 2h,
// 4h, then every 4h.
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour}
}

// Stats is a cheap snapshot of the queue (no scan per call).
type Stats struct {
	// Live recipients by state.
	Queued   int64 `json:"queued"`
	Deferred int64 `json:"deferred"`
	Held     int64 `json:"held"`
	// Live is Queued+Deferred+Held.
	Live int64 `json:"live"`
	// Messages with at least one live recipient.
	Messages int64 `json:"messages"`
	// Ready recipients waiting in memory for Next; InFlight were handed
	// out by Next and not yet Completed.
	Ready    int `json:"ready"`
	InFlight int `json:"in_flight"`
	// Oldest is the creation time of the oldest live message (zero if
	// none) and OldestAgeSeconds its age.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	// FreeBytes is the free space of the spool's file system (only when
	// Options.MinFreeSpace or MinFreePercent is set) and StorageLow
	// whether it is below that reserve: new mail is refused.
	FreeBytes  int64 `json:"free_bytes,omitempty"`
	StorageLow bool  `json:"storage_low"`
}

// Queue is the Pebble-backed spool and scheduler. It is safe for
// concurrent use.
type Queue struct {
	dir  string
	db   *pebble.DB
	opts Options
	log  *slog.Logger
	// idemMu serialises batches that carry idempotency keys (EnqueueBatch).
	idemMu sync.Mutex

	// opMu guards closed; ops counts operations in progress, which Close
	// waits for before closing Pebble.
	opMu     sync.RWMutex
	closed   bool
	ops      sync.WaitGroup
	closedCh chan struct{}
	wg       sync.WaitGroup

	// stripes serialise read-modify-write of one message's keys.
	stripes [256]sync.Mutex
	// bulkMu serialises bulk changes, which hold many stripes at once
	// (two of them locking stripes in different orders could deadlock).
	bulkMu sync.Mutex

	sched scheduler
	space *space
	wake  wakeups

	counters [numCounters]atomic.Int64

	evMu    sync.Mutex
	lastSeq uint64
	pending map[uint64]struct{}

	// curMu guards cursorSynced: when each cursor was last written with
	// a sync (SetCursor).
	curMu        sync.Mutex
	cursorSynced map[string]time.Time

	oldestMu   sync.Mutex
	oldest     time.Time
	oldestSeen time.Time
}

// Open opens (creating if needed) the spool in dir and starts the
// scheduler. It reads only a handful of keys: no spool scan.
func Open(dir string, opts Options) (*Queue, error) {
	if len(opts.RetrySchedule) == 0 {
		opts.RetrySchedule = DefaultRetrySchedule()
	}
	for _, d := range opts.RetrySchedule {
		if d <= 0 {
			return nil, fmt.Errorf("queue: retry schedule entries must be positive, got %v", d)
		}
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = DefaultMaxLifetime
	}
	if opts.ReadyLimit <= 0 {
		opts.ReadyLimit = DefaultReadyLimit
	}
	if opts.MaxBatchRcpts <= 0 {
		opts.MaxBatchRcpts = DefaultMaxBatchRcpts
	}
	if opts.EventRetention <= 0 {
		opts.EventRetention = DefaultEventRetention
	}
	if opts.ScanInterval <= 0 {
		opts.ScanInterval = DefaultScanInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: create %s: %w", dir, err)
	}
	// Before Pebble opens: on a full disk, releasing the ballast gives it
	// room for the WAL and MANIFEST it writes at open.
	sp, err := newSpace(dir, opts)
	if err != nil {
		return nil, err
	}
	po := pebbleOptions(opts.Logger)
	db, err := pebble.Open(dir, po)
	// Open took its own reference to the cache.
	po.Cache.Unref()
	if err != nil {
		return nil, fmt.Errorf("queue: open pebble at %s: %w", dir, err)
	}
	q := &Queue{dir: dir, db: db, opts: opts, log: opts.Logger, closedCh: make(chan struct{}),
		pending: make(map[uint64]struct{}), space: sp,
		cursorSynced: make(map[string]time.Time)}
	// What the live WAL holds is not flushed yet: its flush writes it
	// again as sstables before the WAL is deleted.
	sp.setUnflushed(func() int64 {
		if q.enter() != nil {
			return 0 // closed: Pebble may be gone
		}
		defer q.exit()
		return int64(db.Metrics().WAL.Size)
	})
	q.sched.init(q)
	q.wake.init()
	if err := q.load(); err != nil {
		db.Close()
		return nil, err
	}
	q.wg.Add(2)
	go q.scanLoop()
	go q.wakeLoop()
	if sp.enabled {
		q.wg.Add(1)
		go q.spaceLoop()
	}
	return q, nil
}

// pebbleOptions tunes Pebble for a spool: many small synced batches,
// short-lived keys, point reads, bounded memory.
func pebbleOptions(log *slog.Logger) *pebble.Options {
	o := &pebble.Options{
		// Memtables: 8 MiB each, at most 4 queued before writes stall:
		// bounds memtable memory at 32 MiB. A message's body usually dies
		// (delivered) in the memtable it was written to, so larger ones
		// buy little; every MiB here is resident.
		MemTableSize:                8 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		LBaseMaxBytes:               64 << 20,
		MaxConcurrentCompactions:    func() int { return 2 },
		Merger:                      newCounterMerger(),
		Logger:                      pebbleLogger{log},
		MaxOpenFiles:                1000,
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].BlockSize = 16 << 10
		if i > 0 {
			o.Levels[i].TargetFileSize = o.Levels[i-1].TargetFileSize * 2
		} else {
			o.Levels[i].TargetFileSize = 8 << 20
		}
	}
	// Pebble reserves memtable memory inside the block cache, so the
	// cache must be above the memtables' worst case (4 x 8 MiB; one or
	// two are in use normally) or nothing gets cached at all. Total:
	// 48 MiB, memtables included
	// (allocated outside the Go heap, so it adds to RSS as is). Blocks
	// that do not fit are re-read from the OS page cache, which is not
	// petreld's RSS: with 1M messages queued the hot set is the schedule
	// and recipient keys, not bodies.
	o.Cache = pebble.NewCache(48 << 20)
	return o.EnsureDefaults()
}

// pebbleLogger routes Pebble's log lines into slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}

// load reads the persisted counters and the last event seq.
func (q *Queue) load() error {
	for i := range numCounters {
		v, ok, err := get(q.db, counterKey(i))
		if err != nil {
			return err
		}
		if ok {
			n, err := counterValue(v)
			if err != nil {
				return err
			}
			q.counters[i].Store(n)
		}
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pEvent}, UpperBound: []byte{pEvent + 1}})
	if err != nil {
		return fmt.Errorf("queue: iterate events: %w", err)
	}
	defer it.Close()
	if it.Last() {
		seq, err := parseSeq(string(it.Key()[1:]))
		if err != nil {
			return err
		}
		q.lastSeq = seq
	}
	return nil
}

// enter marks the start of an operation; it fails after Close. Entries
// nest safely (OnEvent and OnFailure may call back into the queue).
func (q *Queue) enter() error {
	q.opMu.RLock()
	defer q.opMu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.ops.Add(1)
	return nil
}

func (q *Queue) exit() { q.ops.Done() }

// Close stops the scheduler and closes Pebble. Batches handed out by Next
// and not Completed stay scheduled and are handed out again after Open.
func (q *Queue) Close() error {
	q.opMu.Lock()
	if q.closed {
		q.opMu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closedCh)
	q.opMu.Unlock()
	q.ops.Wait()
	q.wg.Wait()
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("queue: close pebble: %w", err)
	}
	return nil
}

func (q *Queue) now() time.Time { return q.opts.Now() }

func (q *Queue) stripe(id string) *sync.Mutex {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &q.stripes[h%uint32(len(q.stripes))]
}

// retryDelay is the wait after the given number of attempts (>= 1).
func (q *Queue) retryDelay(attempts int) time.Duration {
	s := q.opts.RetrySchedule
	i := attempts - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// Stats returns counts by live state and the oldest live message's age.
func (q *Queue) Stats() Stats {
	s := Stats{
		Queued:   q.counters[cntQueued].Load(),
		Deferred: q.counters[cntDeferred].Load(),
		Held:     q.counters[cntHeld].Load(),
		Messages: q.counters[cntMessages].Load(),
	}
	s.Live = s.Queued + s.Deferred + s.Held
	s.Ready, s.InFlight = q.sched.sizes()
	if q.space.enabled {
		s.FreeBytes = max(q.space.free(), 0)
		s.StorageLow = s.FreeBytes < q.space.reserve
	}
	if oldest := q.oldestLive(); !oldest.IsZero() {
		s.Oldest = oldest.UTC()
		s.OldestAgeSeconds = math.Max(0, q.now().Sub(oldest).Seconds())
	}
	return s
}

// oldestLive seeks to the first m key (IDs are time-ordered), at most once
// a second.
func (q *Queue) oldestLive() time.Time {
	q.oldestMu.Lock()
	defer q.oldestMu.Unlock()
	if time.Since(q.oldestSeen) < time.Second {
		return q.oldest
	}
	if q.enter() != nil {
		return q.oldest
	}
	defer q.exit()
	q.oldestSeen = time.Now()
	q.oldest = time.Time{}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pMeta}, UpperBound: []byte{pMeta + 1}})
	if err != nil {
		return q.oldest
	}
	defer it.Close()
	if it.First() {
		if t, ok := idTime(string(it.Key()[1:])); ok {
			q.oldest = t
		}
	}
	return q.oldest
}

// Body returns the raw message of a live message.
func (q *Queue) Body(msgID string) ([]byte, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.exit()
	if !validID(msgID) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, msgID)
	}
	v, ok, err := get(q.db, msgKey(pBody, msgID))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, msgID)
	}
	return v, nil
}

// Enqueue stores a message and its recipients in one synced batch and
// returns its ID; the recipients are due at once.
func (q *Queue) Enqueue(ctx context.Context, env Envelope, body []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := q.enter(); err != nil {
		return "", err
	}
	defer q.exit()
	done, err := q.space.admit(int64(len(body)))
	if err != nil {
		return "", err
	}
	t := q.newTxn()
	id, err := t.addMessage(env, body)
	if err != nil {
		t.abort()
		done(false)
		return "", err
	}
	err = t.commit(true)
	done(err == nil)
	if err != nil {
		return "", err
	}
	return id, nil
}

// EnqueueBatch stores several messages and their recipients in ONE synced
// batch (all or none) and returns their IDs in order: the campaign
// engine's path, through ingest.
func (q *Queue) EnqueueBatch(ctx context.Context, msgs []NewMessage) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.exit()
	keyed := false
	var size int64
	for i, m := range msgs {
		if len(m.IdempotencyKey) > mta.MaxIdempotencyKey {
			return nil, fmt.Errorf("queue: message %d of the batch: idempotency key longer than %d bytes", i, mta.MaxIdempotencyKey)
		}
		keyed = keyed || m.IdempotencyKey != ""
		size += int64(m.Len())
	}
	// The whole batch is admitted or refused, as for one message (repeats
	// found below are counted too: a conservative estimate).
	done, err := q.space.admit(size)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() { done(committed) }()
	if keyed {
		// A key's lookup and its commit must not interleave with another
		// batch carrying the same key.
		q.idemMu.Lock()
		defer q.idemMu.Unlock()
	}
	t := q.newTxn()
	ids := make([]string, len(msgs))
	var inBatch map[string]string
	added := 0
	for i, m := range msgs {
		k := m.IdempotencyKey
		if k != "" {
			if id, ok := inBatch[k]; ok {
				ids[i] = id
				continue
			}
			id, ok, err := q.Idempotent(k)
			if err != nil {
				t.abort()
				return nil, err
			}
			if ok {
				ids[i] = id
				continue
			}
		}
		id, err := t.addNew(m)
		if err != nil {
			t.abort()
			return nil, fmt.Errorf("queue: message %d of the batch: %w", i, err)
		}
		ids[i] = id
		added++
		if k != "" {
			if err := t.b.Set(idemKey(k), []byte(id), nil); err != nil {
				t.abort()
				return nil, fmt.Errorf("queue: batch: %w", err)
			}
			if inBatch == nil {
				inBatch = map[string]string{}
			}
			inBatch[k] = id
		}
	}
	if added == 0 {
		t.abort() // every message was a repeat: nothing to write
		return ids, nil
	}
	if err := t.commit(true); err != nil {
		return nil, err
	}
	committed = true
	return ids, nil
}

// Idempotent returns the ID a message with idempotency key k was
// enqueued as, if any (ingest answers a repeat with it before running
// policy again).
func (q *Queue) Idempotent(k string) (string, bool, error) {
	v, closer, err := q.db.Get(idemKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("queue: idempotency key: %w", err)
	}
	defer closer.Close()
	return string(v), true, nil
}

var errNoRecipients = errors.New("queue: message has no recipients")
