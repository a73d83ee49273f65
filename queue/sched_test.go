package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// dsnRecorder is an OnFailure hook that builds a tiny DSN and records calls.
type dsnRecorder struct {
	mu    sync.Mutex
	calls [][]Failure
	ids   []string
}

func (d *dsnRecorder) hook(msgID string, env Envelope, body []byte, failed []Failure) *NewMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, failed)
	d.ids = append(d.ids, msgID)
	var sb strings.Builder
	sb.WriteString("Subject: Undelivered\r\n\r\n")
	for _, f := range failed {
		sb.WriteString(f.Rcpt + " " + string(f.State) + " " + f.Reason + "\r\n")
	}
	return &NewMessage{Envelope: Envelope{From: "", Recipients: []string{env.From}, Source: "dsn"}, Body: []byte(sb.String())}
}

func (d *dsnRecorder) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.calls)
}

func TestRetryScheduleAndExpiry(t *testing.T) {
	tests := []struct {
		name         string
		lifetime     time.Duration
		steps        []step
		wantState    RcptState
		wantAttempts int
		wantReason   string
		wantDSN      bool
	}{
		{"deferred then delivered", time.Hour, []step{{0, Deferred}, {59 * time.Second, 0}, {time.Second, Delivered}},
			StateDelivered, 2, "", false},
		{"schedule steps then repeats last", 24 * time.Hour, []step{{0, Deferred}, {time.Minute, Deferred},
			{4 * time.Minute, 0}, {time.Minute, Deferred}, {5 * time.Minute, Deferred}, {5 * time.Minute, Bounced}},
			StateBounced, 5, "", true},
		{"expires when next retry passes lifetime", 10 * time.Minute, []step{{0, Deferred}, {time.Minute, Deferred},
			{5 * time.Minute, Deferred}}, StateExpired, 3, "expired", true},
		{"expires while waiting", 90 * time.Second, []step{{0, Deferred}, {10 * time.Minute, waitExpiry}},
			StateExpired, 1, "expired", true},
		{"bounce is final at once", time.Hour, []step{{0, Bounced}}, StateBounced, 1, "", true},
		{"suppressed is final, no attempt", time.Hour, []step{{0, Suppressed}}, StateSuppressed, 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			d := &dsnRecorder{}
			q := openTest(t, t.TempDir(), Options{Now: clk.Now, MaxLifetime: tc.lifetime, OnFailure: d.hook,
				RetrySchedule: []time.Duration{time.Minute, 5 * time.Minute}})
			id := mustEnqueue(t, q, "sender@src.test", []string{"r@dst.test"}, "body")
			for i, st := range tc.steps {
				clk.Add(st.advance)
				if st.outcome == waitExpiry {
					continue // the next Next expires it and hands out the DSN
				}
				if st.outcome == 0 {
					noNext(t, q)
					continue
				}
				b := mustNext(t, q)
				if b.MsgID != id || b.Rcpts[0].Attempts != attemptsBefore(tc.steps[:i]) {
					t.Fatalf("step %d: batch %+v", i, b)
				}
				if err := q.Complete(ctxT(t), b, results(b, st.outcome, 400+int(st.outcome), "reply")); err != nil {
					t.Fatal(err)
				}
			}
			if tc.wantDSN {
				b := mustNext(t, q) // the DSN, enqueued in the failing batch
				body, _ := q.Body(b.MsgID)
				if b.Envelope.From != "" || !slices.Equal(addrs(b), []string{"sender@src.test"}) ||
					!strings.Contains(string(body), "r@dst.test "+string(tc.wantState)) {
					t.Fatalf("DSN batch %+v body %q", b, body)
				}
				// A failing DSN never produces another DSN.
				if err := q.Complete(ctxT(t), b, results(b, Bounced, 550, "no")); err != nil {
					t.Fatal(err)
				}
				if d.count() != 1 {
					t.Fatalf("DSN bounce called OnFailure")
				}
			}
			mi, err := q.Message(id)
			if err != nil {
				t.Fatal(err)
			}
			r := mi.Recipients[0]
			if r.State != tc.wantState || r.Attempts != tc.wantAttempts || r.Reason != tc.wantReason {
				t.Fatalf("recipient %+v, want %s attempts %d reason %q", r, tc.wantState, tc.wantAttempts, tc.wantReason)
			}
			if got := d.count() == 1; got != tc.wantDSN {
				t.Fatalf("DSN calls %d, want DSN %v", d.count(), tc.wantDSN)
			}
			if s := q.Stats(); s.Live != 0 || s.Messages != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// waitExpiry as a step outcome: only advance the clock.
const waitExpiry Outcome = 99

type step struct {
	advance time.Duration // before Next
	outcome Outcome       // 0: expect no batch after advancing
}

func attemptsBefore(steps []step) int {
	n := 0
	for _, s := range steps {
		if s.outcome != 0 && s.outcome != Suppressed {
			n++
		}
	}
	return n
}

func TestDSNOncePerComplete(t *testing.T) {
	d := &dsnRecorder{}
	q := openTest(t, t.TempDir(), Options{OnFailure: d.hook})
	id := mustEnqueue(t, q, "s@src.test", []string{"a@x.test", "b@x.test", "c@x.test", "d@y.test"}, "orig")
	b := mustNext(t, q)
	if b.Domain != "x.test" {
		b2 := mustNext(t, q)
		b, b2 = b2, b
		defer q.Complete(ctxT(t), b2, nil)
	}
	rs := []Result{
		{Index: b.Rcpts[0].Index, Outcome: Bounced, Code: 550, Enhanced: "5.1.1", Reply: "550 5.1.1 unknown", Reason: "userunknown"},
		{Index: b.Rcpts[1].Index, Outcome: Delivered, Code: 250},
		{Index: b.Rcpts[2].Index, Outcome: Bounced, Code: 552, Reply: "552 full", Reason: "mailboxfull"},
	}
	if err := q.Complete(ctxT(t), b, rs); err != nil {
		t.Fatal(err)
	}
	if len(d.calls) != 1 || len(d.calls[0]) != 2 || d.ids[0] != id ||
		d.calls[0][0].Rcpt != "a@x.test" || d.calls[0][0].Reason != "userunknown" || d.calls[0][0].Enhanced != "5.1.1" ||
		d.calls[0][1].Rcpt != "c@x.test" {
		t.Fatalf("OnFailure calls %+v", d.calls)
	}
	// The message is still live (d@y.test), and its body is still there.
	if _, err := q.Body(id); err != nil {
		t.Fatal(err)
	}
	evs, _ := q.Events(ctxT(t), EventFilter{Type: "received", Recipient: "s@src.test"})
	if len(evs) != 1 {
		t.Fatalf("DSN received events %+v", evs)
	}
	// The DSN was written by the same batch as the bounces: its event seq
	// directly follows the last bounce's in one allocation.
	bounced, _ := q.Events(ctxT(t), EventFilter{Type: "bounced", Recipient: "c@x.test"})
	if len(bounced) != 1 {
		t.Fatalf("bounced events %+v", bounced)
	}
	a, _ := parseSeq(bounced[0].Seq)
	b2, _ := parseSeq(evs[0].Seq)
	if b2 != a+1 {
		t.Fatalf("DSN event seq %s does not follow bounce seq %s", evs[0].Seq, bounced[0].Seq)
	}
}

func TestHoldReleaseFlushDelete(t *testing.T) {
	clk := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clk.Now})
	ctx := ctxT(t)
	id1 := mustEnqueue(t, q, "s@src.test", []string{"a@x.test", "b@y.test"}, "one")
	id2 := mustEnqueue(t, q, "s@src.test", []string{"c@x.test"}, "two")

	if n, err := q.Hold(ctx, id1); err != nil || n != 2 {
		t.Fatalf("Hold = %d, %v", n, err)
	}
	// id1's batches were in the ready set: they must be dropped, not handed out.
	b := mustNext(t, q)
	if b.MsgID != id2 {
		t.Fatalf("handed out %s while held", b.MsgID)
	}
	if err := q.Complete(ctx, b, results(b, Deferred, 451, "451 later")); err != nil {
		t.Fatal(err)
	}
	noNext(t, q)
	if s := q.Stats(); s.Held != 2 || s.Deferred != 1 || s.Queued != 0 || s.Messages != 2 {
		t.Fatalf("stats %+v", s)
	}
	if n, err := q.Hold(ctx, id1); err != nil || n != 0 {
		t.Fatalf("second Hold = %d, %v", n, err)
	}
	if _, err := q.Hold(ctx, "nonexistent"); err == nil {
		t.Fatal("Hold of unknown id succeeded")
	}

	// Flush: id2's deferred recipient is due now without moving the clock.
	if n, err := q.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	b = mustNext(t, q)
	if b.MsgID != id2 || b.Rcpts[0].Attempts != 1 {
		t.Fatalf("after flush: %+v", b)
	}
	// Hold everything while id2 is in flight; its deferral keeps it held.
	if n, err := q.Hold(ctx, ""); err != nil || n != 1 {
		t.Fatalf("Hold all = %d, %v", n, err)
	}
	if err := q.Complete(ctx, b, results(b, Deferred, 451, "451 again")); err != nil {
		t.Fatal(err)
	}
	mi, _ := q.Message(id2)
	if mi.Recipients[0].State != StateHeld || mi.Recipients[0].Attempts != 2 {
		t.Fatalf("in-flight held recipient %+v", mi.Recipients[0])
	}
	noNext(t, q)

	if n, err := q.Release(ctx, ""); err != nil || n != 3 {
		t.Fatalf("Release all = %d, %v", n, err)
	}
	var got []string
	for range 3 {
		b := mustNext(t, q)
		got = append(got, addrs(b)...)
		if b.MsgID == id1 {
			if err := q.Complete(ctx, b, results(b, Delivered, 250, "ok")); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a@x.test", "b@y.test", "c@x.test"}) {
		t.Fatalf("released %v", got)
	}
	// Delete id2 while it is in flight; a late result must not revive it.
	if n, err := q.Delete(ctx, id2); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	mi, err := q.Message(id2)
	if err != nil || mi.Recipients[0].State != StateDeleted {
		t.Fatalf("deleted message %+v %v", mi, err)
	}
	if _, err := q.Body(id2); err == nil {
		t.Fatal("body kept after delete")
	}
	if s := q.Stats(); s.Live != 0 || s.Messages != 0 {
		t.Fatalf("stats after all %+v", s)
	}
	evs, _ := q.Events(ctx, EventFilter{Recipient: "c@x.test"})
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []string{"received", "deferred", "held", "deferred", "released", "deleted"}
	if !slices.Equal(types, want) {
		t.Fatalf("events %v want %v", types, want)
	}
}

// TestHoldReleaseWhileReady: a recipient held and released while its old
// entry waits in the ready set is still handed out (once).
func TestHoldReleaseWhileReady(t *testing.T) {
	clk := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clk.Now})
	ctx := ctxT(t)
	id := mustEnqueue(t, q, "s@src.test", []string{"a@x.test"}, "m")
	clk.Add(time.Second)
	if n, err := q.Hold(ctx, id); err != nil || n != 1 {
		t.Fatalf("Hold %d %v", n, err)
	}
	clk.Add(time.Second)
	if n, err := q.Release(ctx, id); err != nil || n != 1 {
		t.Fatalf("Release %d %v", n, err)
	}
	b := mustNext(t, q)
	if b.MsgID != id {
		t.Fatalf("got %s", b.MsgID)
	}
	noNext(t, q)
	// A bad result set is refused and leaves the recipient scheduled.
	if err := q.Complete(ctx, b, []Result{{Index: 7, Outcome: Delivered}}); err == nil {
		t.Fatal("result for a foreign recipient accepted")
	}
	if b := mustNext(t, q); b.MsgID != id {
		t.Fatalf("after refused Complete got %s", b.MsgID)
	}
}

func TestListPaging(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	ctx := ctxT(t)
	want := map[string]bool{}
	var ids []string
	for i := range 5 {
		rc := []string{"a@x.test", "b@x.test", "c@y.test"}
		id := mustEnqueue(t, q, "s@src.test", rc, "m")
		ids = append(ids, id)
		for j := range rc {
			want[id+"/"+rc[j]] = i != 0
		}
	}
	// Finish the first message: its recipients leave the list.
	for range 2 {
		b := mustNext(t, q)
		if b.MsgID != ids[0] {
			t.Fatalf("order: %s", b.MsgID)
		}
		q.Complete(ctx, b, results(b, Delivered, 250, "ok"))
	}
	for _, limit := range []int{1, 4, 12, 100} {
		seen := map[string]bool{}
		after, pages := "", 0
		for {
			rs, next, err := q.List(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(rs) > limit {
				t.Fatalf("page of %d > limit %d", len(rs), limit)
			}
			for _, r := range rs {
				k := r.MsgID + "/" + r.Addr
				if seen[k] || !want[k] || r.State != StateQueued {
					t.Fatalf("limit %d: unexpected %+v", limit, r)
				}
				seen[k] = true
			}
			if next == "" {
				break
			}
			after = next
		}
		if len(seen) != 12 {
			t.Fatalf("limit %d: listed %d recipients in %d pages", limit, len(seen), pages)
		}
	}
	for _, bad := range []string{"x", "zz.1", ids[0] + ".-1", ids[0] + "."} {
		if _, _, err := q.List(ctx, bad, 10); err == nil {
			t.Fatalf("cursor %q accepted", bad)
		}
	}
}

func TestEventsFilterPaging(t *testing.T) {
	clk := newClock()
	var seen atomic.Int64
	q := openTest(t, t.TempDir(), Options{Now: clk.Now, OnEvent: func(Event) { seen.Add(1) }})
	ctx := ctxT(t)
	t0 := clk.Now()
	mustEnqueue(t, q, "s@src.test", []string{"a@x.test", "b@x.test"}, "1")
	clk.Add(time.Minute)
	id2, _ := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"c@y.test"}, Campaign: "spring"}, []byte("2"))
	if err := q.AppendEvents(ctx, []Event{{Type: "complained", Recipient: "A@x.test", Campaign: "c1"}}); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 4 {
		t.Fatalf("OnEvent called %d times", seen.Load())
	}
	tests := []struct {
		name string
		f    EventFilter
		want []string // recipients
	}{
		{"all", EventFilter{}, []string{"a@x.test", "b@x.test", "c@y.test", "A@x.test"}},
		{"type", EventFilter{Type: "complained"}, []string{"A@x.test"}},
		{"recipient folds case", EventFilter{Recipient: "a@X.test"}, []string{"a@x.test", "A@x.test"}},
		{"campaign", EventFilter{Campaign: "spring"}, []string{"c@y.test"}},
		{"since", EventFilter{Since: t0.Add(30 * time.Second)}, []string{"c@y.test", "A@x.test"}},
		{"limit", EventFilter{Limit: 2}, []string{"a@x.test", "b@x.test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := q.Events(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, e.Recipient)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	// Paging with After walks every event exactly once, in Seq order.
	var all []Event
	after := ""
	for {
		evs, err := q.Events(ctx, EventFilter{After: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
	if len(all) != 4 || all[2].MsgID != id2 || !slices.IsSortedFunc(all, func(a, b Event) int { return strings.Compare(a.Seq, b.Seq) }) {
		t.Fatalf("paged events %+v", all)
	}
	if _, err := q.Events(ctx, EventFilter{After: "garbage"}); err == nil {
		t.Fatal("bad cursor accepted")
	}
	// Durable cursors.
	if c, err := q.Cursor("hook1"); err != nil || c != "" {
		t.Fatalf("unset cursor %q %v", c, err)
	}
	if err := q.SetCursor("hook1", all[1].Seq); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Cursor("hook1"); c != all[1].Seq {
		t.Fatalf("cursor %q", c)
	}
}

func TestEventRetention(t *testing.T) {
	clk := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clk.Now, EventRetention: time.Hour})
	ctx := ctxT(t)
	id := mustEnqueue(t, q, "s@src.test", []string{"a@x.test"}, "1")
	b := mustNext(t, q)
	q.Complete(ctx, b, results(b, Delivered, 250, "ok"))
	clk.Add(2 * time.Hour)
	id2 := mustEnqueue(t, q, "s@src.test", []string{"b@x.test"}, "2")
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, _ := q.Events(ctx, EventFilter{})
		_, err := q.Message(id)
		if len(evs) == 1 && evs[0].MsgID == id2 && err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old events/tombstone kept: %d events, Message err %v", len(evs), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	o := Options{Now: clk.Now}
	q, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	idA, _ := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"a@x.test"}}, []byte("A"))
	idB, _ := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"b@x.test"}}, []byte("B"))
	idC, _ := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"c@x.test"}}, []byte("C"))
	b1, _ := q.Next(ctx) // handed out, never completed: must come back
	b2, _ := q.Next(ctx)
	if err := q.Complete(ctx, b2, results(b2, Deferred, 421, "busy")); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Next(ctx); err != ErrClosed {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := q.Enqueue(ctx, Envelope{Recipients: []string{"x@y"}}, nil); err != ErrClosed {
		t.Fatalf("Enqueue after Close: %v", err)
	}

	q = openTest(t, dir, o)
	if s := q.Stats(); s.Queued != 2 || s.Deferred != 1 || s.Messages != 3 {
		t.Fatalf("stats after restart %+v", s)
	}
	got := map[string]bool{}
	for range 2 {
		b := mustNext(t, q)
		got[b.MsgID] = true
		if body, _ := q.Body(b.MsgID); len(body) != 1 {
			t.Fatalf("body %q", body)
		}
	}
	if !got[b1.MsgID] || got[b2.MsgID] || len(got) != 2 {
		t.Fatalf("after restart handed out %v (b1 %s, deferred %s)", got, b1.MsgID, b2.MsgID)
	}
	noNext(t, q)
	clk.Add(time.Minute)
	if b := mustNext(t, q); b.MsgID != b2.MsgID || b.Rcpts[0].Attempts != 1 {
		t.Fatalf("deferred after restart %+v", b)
	}
	_ = []string{idA, idB, idC}
}

// TestReadySetBounded queues many recipients with a small ReadyLimit and
// drains them concurrently: the in-memory ready set never exceeds the
// limit, and every recipient is handed out exactly once.
func TestReadySetBounded(t *testing.T) {
	const (
		per   = 100 // 100k recipients (10k under -race)
		limit = 1000
	)
	msgs := 1000
	if raceEnabled {
		msgs = 100
	}
	testnet.SkipIfShort(t, "100k recipients")
	q := openTest(t, t.TempDir(), Options{ReadyLimit: limit, MaxBatchRcpts: 50})
	ctx, cancelAll := context.WithTimeout(context.Background(), time.Minute)
	defer cancelAll()
	rcpts := make([]string, per)
	for i := range rcpts {
		rcpts[i] = "u" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "@d" + string(rune('a'+i%2)) + ".test"
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < msgs; i += 16 {
				if _, err := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: rcpts}, []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := q.Stats(); s.Queued != int64(msgs*per) {
		t.Fatalf("queued %d", s.Queued)
	}
	var mu sync.Mutex
	seen := make(map[rkey]bool, msgs*per)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var total atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b, err := q.Next(dctx)
				if err != nil {
					return
				}
				mu.Lock()
				for _, r := range b.Rcpts {
					k := rkey{b.MsgID, r.Index}
					if seen[k] {
						t.Errorf("handed out twice: %v", k)
					}
					seen[k] = true
				}
				mu.Unlock()
				if err := q.Complete(ctx, b, results(b, Delivered, 250, "ok")); err != nil {
					t.Error(err)
				}
				if total.Add(int64(len(b.Rcpts))) == int64(msgs*per) {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	q.sched.mu.Lock()
	hw := q.sched.readyMax
	q.sched.mu.Unlock()
	if hw > limit || hw == 0 {
		t.Fatalf("ready set high-water mark %d, limit %d", hw, limit)
	}
	if total.Load() != int64(msgs*per) || len(seen) != msgs*per {
		t.Fatalf("delivered %d, distinct %d", total.Load(), len(seen))
	}
	if s := q.Stats(); s.Live != 0 || s.Messages != 0 || s.Ready != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("ready high-water mark %d (limit %d)", hw, limit)
}

// TestCloseDuringOperations: Close while producers, consumers and an
// OnEvent hook that calls back into the queue are busy: every call ends
// with a result or ErrClosed, and what was acknowledged is there after
// reopening.
func TestCloseDuringOperations(t *testing.T) {
	dir := t.TempDir()
	var q *Queue
	var err error
	q, err = Open(dir, Options{OnEvent: func(ev Event) {
		q.Stats()
		q.Message(ev.MsgID)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id, err := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"a@x.test"}}, []byte("b"))
				if err != nil {
					if err != ErrClosed {
						t.Errorf("Enqueue: %v", err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			for {
				b, err := q.Next(ctx)
				if err != nil {
					if err != ErrClosed {
						t.Errorf("Next: %v", err)
					}
					return
				}
				o := Deferred
				if w%2 == 0 {
					o = Delivered
				}
				if err := q.Complete(ctx, b, results(b, o, 250, "ok")); err != nil && err != ErrClosed {
					t.Errorf("Complete: %v", err)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	q2 := openTest(t, dir, Options{})
	for _, id := range acked {
		if _, err := q2.Message(id); err != nil {
			t.Fatalf("acknowledged %s: %v", id, err)
		}
	}
	t.Logf("%d acknowledged before Close", len(acked))
}

// TestBulkChangesAcrossBatches runs Hold(""), Release("") and Flush over
// queues smaller than, equal to and larger than one bulk batch
// (bulkChunk messages per synced batch): every recipient must change
// exactly once and the counters must follow.
func TestBulkChangesAcrossBatches(t *testing.T) {
	for _, n := range []int{1, bulkChunk, 2*bulkChunk + 345} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			clk := newClock()
			q := openTest(t, t.TempDir(), Options{Now: clk.Now})
			// Thousands of synced commits: bound hangs, not speed (the
			// full suite on a loaded 2-core machine took over 3 minutes).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			for i := range n {
				mustEnqueue(t, q, "s@src.test", []string{fmt.Sprintf("a%d@x.test", i), fmt.Sprintf("b%d@y.test", i)}, "m")
			}
			if got, err := q.Hold(ctx, ""); err != nil || got != 2*n {
				t.Fatalf("Hold all = %d, %v; want %d", got, err, 2*n)
			}
			if s := q.Stats(); s.Held != int64(2*n) || s.Queued != 0 {
				t.Fatalf("after hold: %+v", s)
			}
			noNext(t, q)
			if got, err := q.Release(ctx, ""); err != nil || got != 2*n {
				t.Fatalf("Release all = %d, %v; want %d", got, err, 2*n)
			}
			// Defer every recipient once (one batch per message and
			// domain), then flush them all due.
			for range 2 * n {
				b := mustNext(t, q)
				if err := q.Complete(ctx, b, results(b, Deferred, 451, "451 later")); err != nil {
					t.Fatal(err)
				}
			}
			if s := q.Stats(); s.Deferred != int64(2*n) || s.Held != 0 || s.Queued != 0 {
				t.Fatalf("after deferral: %+v", s)
			}
			noNext(t, q)
			if got, err := q.Flush(ctx); err != nil || got != 2*n {
				t.Fatalf("Flush = %d, %v; want %d", got, err, 2*n)
			}
			if got, err := q.Flush(ctx); err != nil || got != 0 {
				t.Fatalf("second Flush = %d, %v; want 0", got, err)
			}
			seen := 0
			for seen < 2*n {
				b := mustNext(t, q)
				seen += len(b.Rcpts)
				if err := q.Complete(ctx, b, results(b, Delivered, 250, "ok")); err != nil {
					t.Fatal(err)
				}
			}
			if s := q.Stats(); s.Live != 0 || s.Messages != 0 {
				t.Fatalf("after delivery: %+v", s)
			}
		})
	}
}
