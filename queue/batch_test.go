package queue

import (
	"context"
	"fmt"
	"strings"
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

// TestEnqueueBatchIdempotencyKeys: a key is stored once, whether it
// repeats inside a batch, in a later batch, or after a reopen (even after
// the message is done); a batch of only repeats writes nothing.
func TestEnqueueBatchIdempotencyKeys(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := func(key, rcpt string) NewMessage {
		return NewMessage{IdempotencyKey: key, Envelope: Envelope{From: "a@x.test", Recipients: []string{rcpt}, Campaign: "c1"},
			Body: []byte("Subject: hi\r\n\r\nbody\r\n")}
	}
	ids, err := q.EnqueueBatch(ctx, []NewMessage{msg("c1:1", "r1@y.test"), msg("c1:2", "r2@y.test"), msg("c1:1", "r1@y.test"), msg("", "r3@y.test")})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != ids[2] || ids[0] == ids[1] || ids[3] == "" {
		t.Fatalf("ids %v: the in-batch repeat must get the first id", ids)
	}
	if st := q.Stats(); st.Messages != 3 {
		t.Fatalf("%d messages stored, want 3", st.Messages)
	}
	again, err := q.EnqueueBatch(ctx, []NewMessage{msg("c1:2", "r2@y.test"), msg("c1:1", "r1@y.test")})
	if err != nil || again[0] != ids[1] || again[1] != ids[0] {
		t.Fatalf("repeat batch: %v %v, want %v %v", again, err, ids[1], ids[0])
	}
	if st := q.Stats(); st.Messages != 3 {
		t.Fatalf("repeat batch stored messages: %d", st.Messages)
	}
	// Finish message 1 (delete), reopen: its key still dedupes.
	if _, err := q.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	after, err := q.EnqueueBatch(ctx, []NewMessage{msg("c1:1", "r1@y.test"), msg("c1:3", "r3@y.test")})
	if err != nil || after[0] != ids[0] || after[1] == ids[0] {
		t.Fatalf("after reopen: %v %v", after, err)
	}
	if st := q.Stats(); st.Messages != 3 { // ids[1], ids[3], c1:3 (ids[0] was deleted)
		t.Fatalf("after reopen: %d messages, want 3", st.Messages)
	}
	if _, err := q.EnqueueBatch(ctx, []NewMessage{msg(strings.Repeat("k", 201), "r@y.test")}); err == nil {
		t.Fatal("oversized key accepted")
	}
}
