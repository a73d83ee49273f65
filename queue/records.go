package queue

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble"
)

// metaRec is the value of an m key.
type metaRec struct {
	From     string   `json:"f"`
	Rcpts    []string `json:"r"`
	Stream   string   `json:"st,omitempty"`
	Tenant   string   `json:"te,omitempty"`
	Campaign string   `json:"ca,omitempty"`
	Source   string   `json:"so,omitempty"`
	Size     int64    `json:"sz"`
	Created  int64    `json:"cr"`
}

func (m *metaRec) envelope() Envelope {
	return Envelope{From: m.From, Recipients: m.Rcpts, Stream: m.Stream, Tenant: m.Tenant,
		Campaign: m.Campaign, Source: m.Source}
}

// rcptRec is the value of an r key.
type rcptRec struct {
	Addr     string    `json:"a"`
	State    RcptState `json:"s"`
	Attempts int       `json:"n,omitempty"`
	// Due is the due time of the recipient's s key (unix nanos) while it
	// is queued or deferred.
	Due      int64  `json:"d,omitempty"`
	Code     int    `json:"c,omitempty"`
	Enhanced string `json:"x,omitempty"`
	Reply    string `json:"y,omitempty"`
	RemoteMX string `json:"h,omitempty"`
	Reason   string `json:"w,omitempty"`
	// SourceIP is the egress address of the last attempt.
	SourceIP string `json:"i,omitempty"`
	Updated  int64  `json:"u,omitempty"`
	// Forced: made due by an operator (flush, release) since the last
	// attempt (Batch.Forced).
	Forced bool `json:"f,omitempty"`
}

// scheduled reports whether the recipient owns an s key.
func (r *rcptRec) scheduled() bool { return r.State == StateQueued || r.State == StateDeferred }

func (r *rcptRec) info(id string, idx int) RcptInfo {
	ri := RcptInfo{MsgID: id, Index: idx, Addr: r.Addr, State: r.State, Attempts: r.Attempts,
		LastReply: r.Reply, LastCode: r.Code, Enhanced: r.Enhanced, Reason: r.Reason, RemoteMX: r.RemoteMX,
		SourceIP: r.SourceIP}
	if r.scheduled() {
		ri.NextAttempt = time.Unix(0, r.Due).UTC()
	}
	if r.Updated != 0 {
		ri.Updated = time.Unix(0, r.Updated).UTC()
	}
	return ri
}

func decode(what string, key, val []byte, v any) error {
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("queue: corrupt %s record at key %q: %w", what, key, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and numbers are marshalled here.
		panic(fmt.Sprintf("queue: marshal %T: %v", v, err))
	}
	return b
}

// reader is what point reads need: *pebble.DB or a snapshot.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// get copies the value at key; found is false when the key is absent.
func get(r reader, key []byte) (val []byte, found bool, err error) {
	v, c, err := r.Get(key)
	if err == pebble.ErrNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue: read %q: %w", key, err)
	}
	val = append([]byte(nil), v...)
	c.Close()
	return val, true, nil
}

// getJSON decodes the value at key into v (straight from Pebble's
// buffer: the decoder copies what it keeps).
func getJSON(r reader, what string, key []byte, v any) (bool, error) {
	val, c, err := r.Get(key)
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: read %q: %w", key, err)
	}
	defer c.Close()
	return true, decode(what, key, val, v)
}

// Counters are int64 deltas combined by a Pebble merge operator, so
// concurrent batches adjust them without a read-modify-write.
const counterMergerName = "petrel.queue.counter.v1"

func newCounterMerger() *pebble.Merger {
	return &pebble.Merger{
		Name: counterMergerName,
		Merge: func(key, value []byte) (pebble.ValueMerger, error) {
			m := &sumMerger{}
			return m, m.MergeNewer(value)
		},
	}
}

type sumMerger struct{ v int64 }

func (m *sumMerger) MergeNewer(value []byte) error {
	n, k := binary.Varint(value)
	if k <= 0 || k != len(value) {
		return fmt.Errorf("queue: corrupt counter value %x", value)
	}
	m.v += n
	return nil
}

func (m *sumMerger) MergeOlder(value []byte) error { return m.MergeNewer(value) }

func (m *sumMerger) Finish(bool) ([]byte, io.Closer, error) {
	return binary.AppendVarint(nil, m.v), nil, nil
}

func counterValue(v []byte) (int64, error) {
	n, k := binary.Varint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("queue: corrupt counter value %x", v)
	}
	return n, nil
}

// Counter names (c keys).
const (
	cntQueued = iota
	cntDeferred
	cntHeld
	cntMessages
	numCounters
)

// counterKey is the c key of counter i.
func counterKey(i int) []byte {
	name := [numCounters]string{"queued", "deferred", "held", "messages"}[i]
	return append([]byte{pCounter}, name...)
}

func stateCounter(s RcptState) int {
	switch s {
	case StateQueued:
		return cntQueued
	case StateDeferred:
		return cntDeferred
	case StateHeld:
		return cntHeld
	}
	return -1
}
