package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/petrel-mta/petrel/mta"
)

// ErrInsufficientStorage is returned, instead of writing, when the file
// system of the spool has less free space than the reserve
// (Options.MinFreeSpace): new mail is refused (SMTP 452 4.3.1, HTTP 507)
// while delivery goes on draining the queue.
var ErrInsufficientStorage = mta.ErrInsufficientStorage

// SpaceChecker is implemented by spools that can tell, before a message
// is sent to them, that they would refuse it for lack of disk space
// (*Queue does). Ingest asks it at MAIL FROM and before an HTTP injection.
type SpaceChecker interface {
	// CheckSpace returns an error wrapping ErrInsufficientStorage while
	// new mail is refused.
	CheckSpace() error
}

// Free-space guard.
//
// Pebble cannot return a failed commit, so the queue must never let it
// run into ENOSPC. In Pebble v1.1.5 (and still in v2.1.7) DB.Apply calls
// Options.Logger.Fatalf("pebble: fatal commit error") on any error from
// commitPipeline.Commit: a WAL write or sync error (record.LogWriter keeps
// it as a sticky error, so every later record fails too), or a failure
// to rotate the memtable or WAL. There is no option or EventListener hook
// that turns it into a returned error, and a Logger whose Fatalf returns
// would not help: the failed batch stays at the head of the pending queue
// with its commit semaphore held ("the commit pipeline will be horked"),
// so every later commit blocks for ever. A full disk also stalls flushes
// and compactions until writes stop. So the queue samples the file
// system's free space (statfs) and keeps, for a reserve R:
//
//   - below R: Enqueue and EnqueueBatch refuse new mail with
//     ErrInsufficientStorage; each admission reserves three times its bytes
//     until its commit ends, so concurrent writers admitted on one sample
//     cannot together write past R, and a sample counts what the live
//     WAL holds once more (its flush); Pebble's own writes (WAL segment
//     preallocation, MANIFEST) can still take free space somewhat below
//     R, never to C (TestFullDiskConcurrentWriters);
//     state changes (deliveries, bounces, holds) still commit: they are
//     small and they make room;
//   - a ballast file of B = R/2, within [24 MiB, 64 MiB], in the spool
//     directory (as CockroachDB's emergency ballast), created while free
//     space is at least R+B and deleted when free space falls below
//     C = min(B/2, R) (someone else filled the disk): it gives Pebble
//     room for WAL segments, flushes and the MANIFEST while delivery
//     drains the queue, and lets the daemon open the spool on a full
//     disk;
//   - below C with no ballast left: Next hands out nothing (a delivery
//     whose result could not be recorded would be repeated);
//   - below F = min(C/4, 1 MiB) plus the batch's size: every commit is
//     refused.
const (
	ballastName = "PETREL-RESERVE"
	// minBallast covers what Pebble writes at open on a full disk: the
	// replayed WAL flushed to an sstable (a memtable, 8 MiB) and a new
	// preallocated WAL segment (8.8 MiB).
	minBallast     = 24 << 20
	maxBallast     = 64 << 20
	maxFloor       = 1 << 20
	spaceInterval  = 250 * time.Millisecond
	spaceStaleness = 100 * time.Millisecond
)

type space struct {
	dir     string
	log     *slog.Logger
	enabled bool
	// reserve, ballast, critical and floor are R, B, C and F above.
	reserve, ballast, critical, floor int64

	mu         sync.Mutex // serialises samples and ballast changes
	hasBallast bool
	avail      atomic.Int64 // bytes free at the last sample
	written    atomic.Int64 // bytes enqueued since the last sample
	inflight   atomic.Int64 // bytes admitted whose commit has not ended
	// unflushed, once Pebble is open, returns the bytes in the live WAL:
	// a sample counts them as written once more (their flush).
	unflushed func() int64
	sampled   atomic.Int64 // unix nanos of the last sample
	low       atomic.Bool
}

// newSpace sizes the guard for dir from the options; with neither
// MinFreeSpace nor MinFreePercent set it is disabled.
func newSpace(dir string, opts Options) (*space, error) {
	s := &space{dir: dir, log: opts.Logger}
	if opts.MinFreeSpace <= 0 && opts.MinFreePercent <= 0 {
		return s, nil
	}
	s.enabled = true
	s.reserve = opts.MinFreeSpace
	if opts.MinFreePercent > 0 {
		du, err := vfs.Default.GetDiskUsage(dir)
		if err != nil {
			return nil, fmt.Errorf("queue: disk usage of %s: %w", dir, err)
		}
		s.reserve = int64(float64(du.TotalBytes) * opts.MinFreePercent / 100)
	}
	s.ballast = min(max(s.reserve/2, minBallast), maxBallast)
	s.critical = min(s.ballast/2, s.reserve)
	s.floor = min(s.critical/4, maxFloor)
	if fi, err := os.Stat(s.ballastPath()); err == nil {
		s.hasBallast = true
		if fi.Size() != s.ballast {
			s.dropBallast("size changed")
		}
	}
	s.sample()
	return s, nil
}

// setUnflushed installs the unflushed-bytes source (under s.mu: the
// space loop may be sampling).
func (s *space) setUnflushed(f func() int64) {
	s.mu.Lock()
	s.unflushed = f
	s.mu.Unlock()
}

func (s *space) ballastPath() string { return filepath.Join(s.dir, ballastName) }

// sample reads the free space, releases the ballast when the disk is
// nearly full and updates the low state. It does not create the ballast
// (maintain does, outside request paths).
func (s *space) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sampleLocked()
}

func (s *space) sampleLocked() {
	du, err := vfs.Default.GetDiskUsage(s.dir)
	if err != nil {
		s.log.Error("queue: free space", "dir", s.dir, "err", err)
		return
	}
	avail := int64(min(du.AvailBytes, 1<<62))
	if s.unflushed != nil {
		avail -= s.unflushed()
	}
	if s.hasBallast && avail < s.critical {
		s.dropBallast(fmt.Sprintf("%d bytes free", avail))
		if du, err = vfs.Default.GetDiskUsage(s.dir); err == nil {
			avail = int64(min(du.AvailBytes, 1<<62))
		}
	}
	s.avail.Store(avail)
	s.written.Store(0)
	s.sampled.Store(time.Now().UnixNano())
	low := avail < s.reserve
	if s.low.Swap(low) != low {
		if low {
			s.log.Warn("queue: free disk space below the reserve: refusing new mail, still delivering",
				"free_bytes", avail, "min_free_space", s.reserve, "dir", s.dir)
		} else {
			s.log.Info("queue: free disk space above the reserve again: accepting mail",
				"free_bytes", avail, "min_free_space", s.reserve)
		}
	}
}

// maintain samples and recreates the ballast once there is room for it.
func (s *space) maintain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sampleLocked()
	if s.hasBallast || s.ballast <= 0 || s.avail.Load() < s.reserve+s.ballast {
		return
	}
	if err := writeBallast(s.ballastPath(), s.ballast); err != nil {
		s.log.Warn("queue: cannot create the disk reserve file", "path", s.ballastPath(), "err", err)
		os.Remove(s.ballastPath())
		return
	}
	s.hasBallast = true
	s.log.Info("queue: disk reserve file in place", "path", s.ballastPath(), "bytes", s.ballast)
	s.sampleLocked()
}

// dropBallast deletes the ballast file; s.mu is held (or s is new).
func (s *space) dropBallast(why string) {
	if err := os.Remove(s.ballastPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("queue: cannot delete the disk reserve file", "path", s.ballastPath(), "err", err)
		return
	}
	s.hasBallast = false
	s.log.Warn("queue: disk nearly full, released the disk reserve file for delivery", "bytes", s.ballast, "why", why)
}

// writeBallast allocates size bytes of real blocks at path (fallocate
// where the file system has it, else zeros: a sparse file would reserve
// nothing) and syncs.
func writeBallast(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := allocate(f, size); err != nil {
		zeros := make([]byte, 1<<20)
		for left := size; left > 0; {
			n := min(int64(len(zeros)), left)
			if _, err := f.Write(zeros[:n]); err != nil {
				f.Close()
				return err
			}
			left -= n
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// free estimates the bytes free now: the last sample (refreshed when
// older than spaceStaleness) minus what was enqueued since and what is
// being enqueued.
func (s *space) free() int64 {
	if time.Now().UnixNano()-s.sampled.Load() > int64(spaceStaleness) {
		s.sample()
	}
	return s.avail.Load() - s.written.Load() - s.inflight.Load()
}

// admit reserves room for new messages of n bytes in all, or refuses
// them with ErrInsufficientStorage. The reservation counts against every
// concurrent admission until the caller ends it with done (after its
// commit, successful or not), so writers admitted on the same sample
// cannot together write past the reserve.
func (s *space) admit(n int64) (done func(committed bool), err error) {
	if !s.enabled {
		return func(bool) {}, nil
	}
	// Pebble writes a body twice before its WAL is deleted (WAL and
	// memtable flush), and a compaction rewrites it once more before the
	// old sstables go: count it three times (with two, a quiet machine
	// whose compactions keep up went below the critical level in
	// TestFullDiskConcurrentWriters).
	cost := 3 * n
	s.inflight.Add(cost)
	if free := s.free(); free < s.reserve {
		s.inflight.Add(-cost)
		return nil, fmt.Errorf("%w: %d bytes free on the spool's file system, %d reserved (queue.min_free_space)",
			ErrInsufficientStorage, max(free+cost, 0), s.reserve)
	}
	return func(committed bool) {
		if committed {
			s.written.Add(cost)
		}
		s.inflight.Add(-cost)
	}, nil
}

// check is admit for nothing: whether new mail is refused now.
func (s *space) check() error {
	done, err := s.admit(0)
	if err == nil {
		done(false)
	}
	return err
}

// commitOK reports whether a batch of n bytes may be committed.
func (s *space) commitOK(n int64) error {
	if !s.enabled {
		return nil
	}
	if free := s.free(); free-n < s.floor {
		return fmt.Errorf("%w: %d bytes free on the spool's file system: state changes wait for space",
			ErrInsufficientStorage, max(free, 0))
	}
	return nil
}

// paused reports whether delivery must wait (results could not be
// recorded safely).
func (s *space) paused() bool {
	return s.enabled && s.free() < s.critical
}

// spaceLoop samples the free space every spaceInterval.
func (q *Queue) spaceLoop() {
	defer q.wg.Done()
	q.space.maintain()
	t := time.NewTicker(spaceInterval)
	defer t.Stop()
	for {
		select {
		case <-q.closedCh:
			return
		case <-t.C:
			q.space.maintain()
		}
	}
}

// CheckSpace implements SpaceChecker: it fails while free space is below
// Options.MinFreeSpace.
func (q *Queue) CheckSpace() error { return q.space.check() }

// StorageLow reports whether new mail is refused for lack of disk space.
func (q *Queue) StorageLow() bool { return q.space.enabled && q.CheckSpace() != nil }
