package queue

import (
	"testing"
)

func TestFlushDomain(t *testing.T) {
	clk := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clk.Now})
	ctx := ctxT(t)
	mustEnqueue(t, q, "s@src.test", []string{"a1@a.test", "b1@b.test"}, "one")
	mustEnqueue(t, q, "s@src.test", []string{"a2@a.test"}, "two")
	for range 3 {
		b := mustNext(t, q)
		if err := q.Complete(ctx, b, results(b, Deferred, 451, "451 later")); err != nil {
			t.Fatal(err)
		}
	}
	noNext(t, q)
	if _, err := q.FlushDomain(ctx, " "); err == nil {
		t.Fatal("FlushDomain of an empty domain succeeded")
	}
	if n, err := q.FlushDomain(ctx, "A.test."); err != nil || n != 2 {
		t.Fatalf("FlushDomain(a.test) = %d, %v; want 2", n, err)
	}
	got := map[string]bool{}
	for range 2 {
		b := mustNext(t, q)
		if b.Domain != "a.test" || !b.Forced {
			t.Fatalf("after flushing a.test: %+v", b)
		}
		got[b.Rcpts[0].Addr] = true
		// Delivering a.test now wakes nothing else: b.test stays put.
		if err := q.Complete(ctx, b, results(b, Delivered, 250, "250 ok")); err != nil {
			t.Fatal(err)
		}
	}
	if !got["a1@a.test"] || !got["a2@a.test"] {
		t.Fatalf("flushed %v", got)
	}
	noNext(t, q)
	if n, err := q.FlushDomain(ctx, "nothing.test"); err != nil || n != 0 {
		t.Fatalf("FlushDomain(nothing.test) = %d, %v", n, err)
	}
}

// TestDeliveredDomainRetriesEarly: once a recipient of a domain with
// deferred mail is delivered, the domain's deferred recipients are due
// at once, not after their retry step (the clock does not move here).
func TestDeliveredDomainRetriesEarly(t *testing.T) {
	clk := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clk.Now})
	ctx := ctxT(t)
	mustEnqueue(t, q, "s@src.test", []string{"d1@a.test", "d2@a.test", "other@b.test"}, "one")
	for range 2 {
		b := mustNext(t, q)
		if err := q.Complete(ctx, b, results(b, Deferred, 451, "451 later")); err != nil {
			t.Fatal(err)
		}
	}
	noNext(t, q)
	mustEnqueue(t, q, "s@src.test", []string{"new@a.test"}, "two")
	b := mustNext(t, q)
	if b.Rcpts[0].Addr != "new@a.test" {
		t.Fatalf("handed out %v", addrs(b))
	}
	if err := q.Complete(ctx, b, results(b, Delivered, 250, "250 ok")); err != nil {
		t.Fatal(err)
	}
	b = mustNext(t, q)
	if b.Domain != "a.test" || len(b.Rcpts) != 2 || b.Forced || b.Rcpts[0].Attempts != 1 {
		t.Fatalf("early retry: %+v", b)
	}
	noNext(t, q) // b.test was not woken
}
