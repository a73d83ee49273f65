package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// store is the small Pebble database at <data_dir>/feedback: soft-bounce
// counts and paused streams. Keys:
//
//	's' stream 0 address 0 msgID -> unix nanos of the soft bounce
//	'p' stream                    -> JSON pauseInfo
//	'f' name                      -> unix nanos a webhook was first configured
type store struct {
	db *pebble.DB
	mu sync.Mutex // serialises count-then-delete of soft bounces
}

// pauseInfo is why and since when a stream is paused.
type pauseInfo struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

func openStore(dir string, log *slog.Logger) (*store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{log}})
	if err != nil {
		return nil, fmt.Errorf("events: open store %s: %w", dir, err)
	}
	return &store{db: db}, nil
}

// pebbleLogger sends Pebble's log lines to slog at debug level.
type pebbleLogger struct{ log *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.log.Error("pebble: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("events: close store: %w", err)
	}
	return nil
}

func softPrefix(stream, addr string) []byte {
	k := append([]byte{'s'}, stream...)
	k = append(k, 0)
	k = append(k, strings.ToLower(addr)...)
	return append(k, 0)
}

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// addSoft records a soft bounce of addr in stream for msgID at t (one per
// message: repeats of the same message count once) and returns how many
// distinct messages soft-bounced within window before t. Older entries
// are deleted.
func (s *store) addSoft(stream, addr, msgID string, t time.Time, window time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := softPrefix(stream, addr)
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(append(append([]byte(nil), p...), msgID...), binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())), nil); err != nil {
		return 0, fmt.Errorf("events: batch: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("events: record soft bounce: %w", err)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("events: iterate soft bounces: %w", err)
	}
	horizon := t.Add(-window).UnixNano()
	n := 0
	var stale [][]byte
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > horizon {
			n++
		} else {
			stale = append(stale, append([]byte(nil), it.Key()...))
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("events: iterate soft bounces: %w", err)
	}
	for _, k := range stale {
		if err := s.db.Delete(k, pebble.NoSync); err != nil {
			return n, fmt.Errorf("events: delete stale soft bounce: %w", err)
		}
	}
	return n, nil
}

// clearSoft forgets the soft bounces of addr in stream (after it was
// suppressed).
func (s *store) clearSoft(stream, addr string) error {
	p := softPrefix(stream, addr)
	if err := s.db.DeleteRange(p, prefixEnd(p), pebble.Sync); err != nil {
		return fmt.Errorf("events: clear soft bounces: %w", err)
	}
	return nil
}

func (s *store) setPaused(stream string, info *pauseInfo) error {
	k := append([]byte{'p'}, stream...)
	var err error
	if info == nil {
		err = s.db.Delete(k, pebble.Sync)
	} else {
		v, merr := json.Marshal(info)
		if merr != nil {
			return fmt.Errorf("events: encode pause: %w", merr)
		}
		err = s.db.Set(k, v, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("events: store pause of %q: %w", stream, err)
	}
	return nil
}

func (s *store) paused() (map[string]pauseInfo, error) {
	out := map[string]pauseInfo{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'p'}, UpperBound: []byte{'q'}})
	if err != nil {
		return nil, fmt.Errorf("events: iterate pauses: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		var pi pauseInfo
		if json.Unmarshal(it.Value(), &pi) == nil {
			out[string(it.Key()[1:])] = pi
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("events: iterate pauses: %w", err)
	}
	return out, nil
}

// firstSeen returns the time stored for name, storing now if there is none.
func (s *store) firstSeen(name string, now time.Time) (time.Time, error) {
	k := append([]byte{'f'}, name...)
	v, closer, err := s.db.Get(k)
	if err == nil {
		defer closer.Close()
		if len(v) == 8 {
			return time.Unix(0, int64(binary.BigEndian.Uint64(v))), nil
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return time.Time{}, fmt.Errorf("events: read %s: %w", name, err)
	}
	if err := s.db.Set(k, binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())), pebble.Sync); err != nil {
		return time.Time{}, fmt.Errorf("events: store %s: %w", name, err)
	}
	return now, nil
}
