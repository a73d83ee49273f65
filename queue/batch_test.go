package queue

import (
	"context"
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// walSyncs is how many times Pebble fsynced the WAL so far.
func walSyncs(t *testing.T, q *Queue) uint64 {
	t.Helper()
	var m dto.Metric
	if err := q.db.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestEnqueueBatch: a batch of messages is one synced commit (one WAL
// fsync, where as many Enqueue calls need one each), every message is
// stored with its body (also a body given in Parts), and a batch with one
// bad message stores none of them.
func TestEnqueueBatch(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	const n = 20
	var msgs []NewMessage
	for i := range n {
		body := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)
		nm := NewMessage{Envelope: Envelope{From: "a@example.org", Recipients: []string{fmt.Sprintf("r%d@example.com", i)}, Source: "campaign"}}
		if i%2 == 0 {
			nm.Body = []byte(body)
		} else {
			nm.Parts = [][]byte{[]byte(body[:5]), []byte(body[5:])}
		}
		msgs = append(msgs, nm)
	}

	before := walSyncs(t, q)
	ids, err := q.EnqueueBatch(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if got := walSyncs(t, q) - before; got != 1 {
		t.Errorf("EnqueueBatch of %d messages made %d WAL syncs, want 1", n, got)
	}
	if len(ids) != n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	for i, id := range ids {
		b, err := q.Body(id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i); string(b) != want {
			t.Errorf("message %d body %q, want %q", i, b, want)
		}
		mi, err := q.Message(id)
		if err != nil || mi.Size != int64(len(b)) || mi.Source != "campaign" {
			t.Errorf("message %d: %+v, %v", i, mi, err)
		}
	}

	// The counter does count commits: single Enqueues sync each.
	before = walSyncs(t, q)
	for i := range 3 {
		if _, err := q.Enqueue(ctx, msgs[i].Envelope, []byte("Subject: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got := walSyncs(t, q) - before; got != 3 {
		t.Errorf("3 Enqueue calls made %d WAL syncs, want 3", got)
	}

	// All or nothing.
	st := q.Stats()
	bad := append([]NewMessage{}, msgs[:3]...)
	bad = append(bad, NewMessage{Envelope: Envelope{From: "a@example.org"}, Body: []byte("Subject: none\r\n\r\n")})
	if _, err := q.EnqueueBatch(ctx, bad); err == nil {
		t.Fatal("EnqueueBatch with a message without recipients succeeded")
	}
	if got := q.Stats(); got.Messages != st.Messages || got.Queued != st.Queued {
		t.Errorf("failed batch changed the queue: %d messages / %d queued, was %d / %d", got.Messages, got.Queued, st.Messages, st.Queued)
	}
}
