package main

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestSuppressionEventsSurviveKill9 adds suppressions over the API from 16
// clients while petreld is killed with SIGKILL three times. Afterwards
// every acknowledged (201) suppression is in the list, and every listed
// suppression has its "suppressed" event in the event log (ARCHITECTURE.md
// invariant 9: the change and its outbox record are one commit, the event
// is forwarded from the outbox). A forwarded change may repeat only when a
// kill fell between the event's append and the outbox acknowledgement, so
// an address has at most 1 + kills events.
func TestSuppressionEventsSurviveKill9(t *testing.T) {
	e := newEnv(t)
	e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				addr := fmt.Sprintf("w%02d-%05d@crash.test", w, i)
				code, err := e.api("POST", "/api/v1/suppressions", map[string]string{"address": addr, "stream": "marketing", "reason": "complaint"}, nil)
				if err == nil && code == 201 {
					mu.Lock()
					acked[addr] = true
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond) // daemon down
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	const kills = 3
	for k := 0; k < kills; k++ {
		target := count() + 300
		waitFor(t, 30*time.Second, "suppressions acknowledged", func() bool { return count() >= target })
		e.kill()
		time.Sleep(100 * time.Millisecond)
		e.start()
	}
	waitFor(t, 30*time.Second, "suppressions after the last restart", func() bool { return count() >= 300*kills+100 })
	cancel()
	wg.Wait()

	listed := map[string]bool{}
	for after := ""; ; {
		var page struct {
			Entries []struct{ Address, Stream string }
			Next    string
		}
		if code, err := e.api("GET", "/api/v1/suppressions?stream=marketing&limit=10000&after="+url.QueryEscape(after), nil, &page); err != nil || code != 200 {
			t.Fatalf("list suppressions: %d %v", code, err)
		}
		for _, en := range page.Entries {
			listed[en.Address] = true
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	for a := range acked {
		if !listed[a] {
			t.Errorf("acknowledged suppression %s lost", a)
		}
	}
	events := map[string]int{}
	readEvents := func() {
		clear(events)
		for after := ""; ; {
			var page struct {
				Events []struct{ Recipient, Stream, Reason string }
				Next   string
			}
			if code, err := e.api("GET", "/api/v1/events?type=suppressed&limit=1000&after="+url.QueryEscape(after), nil, &page); err != nil || code != 200 {
				t.Fatalf("events: %d %v", code, err)
			}
			for _, ev := range page.Events {
				if ev.Stream == "marketing" && ev.Reason == "complaint" {
					events[ev.Recipient]++
				}
			}
			if page.Next == "" || len(page.Events) == 0 {
				break
			}
			after = page.Next
		}
	}
	missing := 0
	// The forwarder drains the outbox at start and after every commit.
	testnetWait := time.Now().Add(20 * time.Second)
	for {
		readEvents()
		missing = 0
		for a := range listed {
			if events[a] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(testnetWait) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	dups := 0
	for a, n := range events {
		if !listed[a] {
			t.Errorf("event for %s, which is not suppressed", a)
		}
		if n > 1+kills {
			t.Errorf("%s has %d suppressed events, more than 1+kills", a, n)
		}
		dups += n - 1
	}
	t.Logf("%d acknowledged, %d listed, %d kills, %d without event, %d duplicate events", len(acked), len(listed), kills, missing, dups)
	if missing != 0 {
		t.Fatalf("%d suppressions have no suppressed event", missing)
	}
}
