package events

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// TestForwardSuppressions: changes committed to a real suppression store
// become "suppressed" events in a real queue's event log, once each,
// removals add none, and the outbox is empty afterwards; changes committed
// while the forwarder runs are forwarded too.
func TestForwardSuppressions(t *testing.T) {
	dir := t.TempDir()
	st, err := suppress.Open(filepath.Join(dir, "suppression"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, a := range []string{"a@x.test", "b@x.test", "c@x.test"} {
		if _, err := st.Add(suppress.Entry{Address: a, Stream: "marketing", Reason: suppress.ReasonHardBounce}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Remove("marketing", "b@x.test"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, err := DrainSuppressions(ctx, st, q)
	if err != nil || n != 3 {
		t.Fatalf("drain: %d events, %v; want 3", n, err)
	}
	if ob, _ := st.Outbox(0); len(ob) != 0 {
		t.Fatalf("outbox not acknowledged: %d left", len(ob))
	}
	if n, err := DrainSuppressions(ctx, st, q); err != nil || n != 0 {
		t.Fatalf("second drain: %d, %v", n, err)
	}

	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { ForwardSuppressions(fctx, st, q, nil); close(done) }()
	if _, err := st.Add(suppress.Entry{Address: "d@x.test", Reason: suppress.ReasonComplaint}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var evs []queue.Event
	for time.Now().Before(deadline) {
		evs, err = q.Events(ctx, queue.EventFilter{Type: "suppressed"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 4 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if len(evs) != 4 {
		t.Fatalf("got %d suppressed events, want 4: %+v", len(evs), evs)
	}
	want := []string{"a@x.test/marketing/hard_bounce", "b@x.test/marketing/hard_bounce", "c@x.test/marketing/hard_bounce", "d@x.test/*/complaint"}
	for i, ev := range evs {
		if got := ev.Recipient + "/" + ev.Stream + "/" + ev.Reason; got != want[i] {
			t.Errorf("event %d = %s, want %s", i, got, want[i])
		}
	}
}
