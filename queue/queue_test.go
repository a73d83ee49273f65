package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a controllable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTest(t *testing.T, dir string, o Options) *Queue {
	t.Helper()
	if o.ScanInterval == 0 {
		o.ScanInterval = 5 * time.Millisecond
	}
	q, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustEnqueue(t *testing.T, q *Queue, from string, rcpts []string, body string) string {
	t.Helper()
	id, err := q.Enqueue(ctxT(t), Envelope{From: from, Recipients: rcpts, Stream: "transactional", Campaign: "c1"}, []byte(body))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func mustNext(t *testing.T, q *Queue) *Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return b
}

// noNext asserts that nothing is handed out within a short while.
func noNext(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	if b, err := q.Next(ctx); err == nil {
		t.Fatalf("Next handed out %s %v, want nothing", b.MsgID, b.Rcpts)
	}
}

func results(b *Batch, o Outcome, code int, reply string) []Result {
	var rs []Result
	for _, r := range b.Rcpts {
		rs = append(rs, Result{Index: r.Index, Outcome: o, Code: code, Reply: reply, RemoteMX: "mx." + b.Domain})
	}
	return rs
}

func addrs(b *Batch) []string {
	var out []string
	for _, r := range b.Rcpts {
		out = append(out, r.Addr)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	body := "Subject: hi\r\n\r\nbody\r\n"
	id := mustEnqueue(t, q, "a@src.test", []string{"x@dst.test"}, body)
	if !validID(id) {
		t.Fatalf("bad id %q", id)
	}
	b := mustNext(t, q)
	if b.MsgID != id || b.Domain != "dst.test" || !slices.Equal(addrs(b), []string{"x@dst.test"}) ||
		b.Envelope.From != "a@src.test" || b.Size != int64(len(body)) {
		t.Fatalf("batch = %+v", b)
	}
	got, err := q.Body(id)
	if err != nil || !bytes.Equal(got, []byte(body)) {
		t.Fatalf("Body = %q, %v", got, err)
	}
	if s := q.Stats(); s.Queued != 1 || s.Messages != 1 || s.InFlight != 1 {
		t.Fatalf("stats before complete %+v", s)
	}
	if err := q.Complete(ctxT(t), b, results(b, Delivered, 250, "250 ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Body(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body after delivery: %v", err)
	}
	mi, err := q.Message(id)
	if err != nil || len(mi.Recipients) != 1 || mi.Recipients[0].State != StateDelivered ||
		mi.Recipients[0].LastReply != "250 ok" || mi.Recipients[0].Attempts != 1 {
		t.Fatalf("Message after completion = %+v, %v", mi, err)
	}
	if s := q.Stats(); s.Live != 0 || s.Messages != 0 || s.InFlight != 0 {
		t.Fatalf("stats after complete %+v", s)
	}
	evs, err := q.Events(ctxT(t), EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{"received", "delivered"}) {
		t.Fatalf("events %v", types)
	}
	noNext(t, q)
}

func TestBatching(t *testing.T) {
	tests := []struct {
		name     string
		rcpts    []string
		maxBatch int
		want     [][]string // batches in order
	}{
		{"same domain one batch", []string{"a@x.test", "b@X.test", "c@x.test"}, 0,
			[][]string{{"a@x.test", "b@X.test", "c@x.test"}}},
		{"domains split", []string{"a@x.test", "b@y.test", "c@x.test"}, 0,
			[][]string{{"a@x.test", "c@x.test"}, {"b@y.test"}}},
		{"max batch", []string{"a@x.test", "b@x.test", "c@x.test"}, 2,
			[][]string{{"a@x.test", "b@x.test"}, {"c@x.test"}}},
		{"duplicates dropped", []string{"a@x.test", "a@x.test"}, 0, [][]string{{"a@x.test"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := openTest(t, t.TempDir(), Options{MaxBatchRcpts: tc.maxBatch})
			id := mustEnqueue(t, q, "s@src.test", tc.rcpts, "x")
			var got [][]string
			for range tc.want {
				b := mustNext(t, q)
				if b.MsgID != id {
					t.Fatalf("id %s want %s", b.MsgID, id)
				}
				got = append(got, addrs(b))
			}
			slices.SortFunc(got, func(a, b []string) int { return len(b) - len(a) })
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("batches %v want %v", got, tc.want)
			}
			noNext(t, q)
		})
	}
}
