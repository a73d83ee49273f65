package suppress

// The outbox makes a suppression change and its event agree after a
// crash (ARCHITECTURE.md invariant 9). The suppression list and the
// queue's event log are two Pebble stores, so they cannot share a commit:
// every Add, Remove and imported row is committed together with an outbox
// record in this store, and a forwarder (events.ForwardSuppressions)
// appends the matching event to the event log and only then acknowledges
// the record. A crash before the append leaves the record to be forwarded
// after restart; a crash between the append and the acknowledgement
// forwards it again, so the event may appear twice, identical (same type,
// address, stream and time).
//
// Keyspace addition:
//
//	key   "o" seq (uint64 BE, unix nanos of the change, made unique)
//	value op(1: 0 add, 1 remove) len(stream)(1) stream encodeValue(entry)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// Change is one outbox record: a committed suppression change whose event
// has not been acknowledged yet.
type Change struct {
	// Seq orders changes; pass the last one handled to AckOutbox.
	Seq     uint64
	Entry   Entry
	Removed bool
}

const outboxPrefix = 'o'

func outboxKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = outboxPrefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// nextSeq returns a sequence number above every earlier one: the current
// time in nanoseconds, or one more than the last when the clock did not
// advance (or went back).
func (s *Store) nextSeq() uint64 {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	n := uint64(time.Now().UnixNano())
	if n <= s.lastSeq {
		n = s.lastSeq + 1
	}
	s.lastSeq = n
	return n
}

// loadLastSeq initialises the sequence from the newest outbox record, so
// a clock that went back across a restart still sorts new records last.
func (s *Store) loadLastSeq() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{outboxPrefix}, UpperBound: []byte{outboxPrefix + 1}})
	if err != nil {
		return fmt.Errorf("suppress: outbox: %w", err)
	}
	defer it.Close()
	if it.Last() && len(it.Key()) == 9 {
		s.lastSeq = binary.BigEndian.Uint64(it.Key()[1:])
	}
	return it.Error()
}

// setWithOutbox adds the outbox record of a change of e to b.
func (s *Store) setWithOutbox(b *pebble.Batch, e Entry, removed bool) error {
	v := make([]byte, 0, 2+len(e.Stream)+10+len(e.Source)+len(e.Address))
	op := byte(0)
	if removed {
		op = 1
	}
	v = append(v, op, byte(len(e.Stream)))
	v = append(v, e.Stream...)
	v = append(v, encodeValue(e)...)
	return b.Set(outboxKey(s.nextSeq()), v, nil)
}

func decodeChange(k, v []byte) (Change, error) {
	if len(k) != 9 || len(v) < 2 || len(v) < 2+int(v[1]) {
		return Change{}, errors.New("suppress: corrupt outbox record")
	}
	n := int(v[1])
	e, err := decodeValue(string(v[2:2+n]), v[2+n:])
	if err != nil {
		return Change{}, err
	}
	return Change{Seq: binary.BigEndian.Uint64(k[1:]), Entry: e, Removed: v[0] == 1}, nil
}

// Outbox returns up to limit unacknowledged changes, oldest first.
func (s *Store) Outbox(limit int) ([]Change, error) {
	if limit <= 0 {
		limit = 1000
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{outboxPrefix}, UpperBound: []byte{outboxPrefix + 1}})
	if err != nil {
		return nil, fmt.Errorf("suppress: outbox: %w", err)
	}
	defer it.Close()
	var out []Change
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		c, err := decodeChange(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("suppress: outbox: %w", err)
	}
	// Pebble makes a batch visible before its WAL sync completes, so a
	// change read here may not be durable yet: its writer is still
	// waiting for the sync, and a crash now would lose it while its event
	// survived. One synced empty log record makes every change read
	// durable before anyone acts on it (TestSuppressionEventsSurviveKill9
	// found an event for a suppression that was gone after kill -9).
	if len(out) > 0 {
		if err := s.db.LogData(nil, pebble.Sync); err != nil {
			return nil, fmt.Errorf("suppress: outbox: sync: %w", err)
		}
	}
	return out, nil
}

// AckOutbox deletes every outbox record up to and including seq: their
// events are durable elsewhere. The delete is synced, so a power loss does
// not bring back records whose events were appended.
func (s *Store) AckOutbox(seq uint64) error {
	if err := s.db.DeleteRange([]byte{outboxPrefix}, outboxKey(seq+1), pebble.Sync); err != nil {
		return fmt.Errorf("suppress: ack outbox: %w", err)
	}
	return nil
}

// OutboxReady is signalled (without blocking, coalesced) after every
// commit that added outbox records.
func (s *Store) OutboxReady() <-chan struct{} { return s.ready }

func (s *Store) signalOutbox() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
