package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// TestDeliveredDomainRetriesEarly: mail deferred by a destination's MX
// (451) waits an hour on the schedule; when a new message to that domain
// is delivered, the deferred ones are retried at once and delivered, and
// another domain's deferred mail is left alone.
func TestDeliveredDomainRetriesEarly(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("flaky.test. 300 IN MX 10 mx.flaky.test.", "mx.flaky.test. 300 IN A 127.0.0.2",
		"other.test. 300 IN MX 10 mx.other.test.", "mx.other.test. 300 IN A 127.0.0.3")
	var up atomic.Bool
	script := testnet.MXScript{OnRcpt: func(string, int) error {
		if up.Load() {
			return nil
		}
		return testnet.Reply(451, "4.3.0", "try later")
	}}
	flaky := f.startMX(t, "127.0.0.2", testnet.MXOptions{Script: script})
	other := f.startMX(t, "127.0.0.3", testnet.MXOptions{Script: script})
	q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Hour}, MaxLifetime: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	enqueue := func(rcpt string) {
		t.Helper()
		if _, err := q.Enqueue(context.Background(), queue.Envelope{From: "s@src.test", Recipients: []string{rcpt}}, []byte(testBody)); err != nil {
			t.Fatal(err)
		}
	}
	const n = 5
	for i := range n {
		enqueue(fmt.Sprintf("r%d@flaky.test", i))
	}
	enqueue("x@other.test")
	d := f.deliverer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx, q) }()
	defer func() { cancel(); wg.Wait() }()
	if !testnet.Wait(5*time.Second, func() bool { return q.Stats().Deferred == n+1 }) {
		t.Fatalf("not deferred: %+v", q.Stats())
	}
	up.Store(true)
	enqueue("new@flaky.test")
	if !testnet.Wait(5*time.Second, func() bool { return flaky.Count() == n+1 }) {
		t.Fatalf("flaky.test MX got %d messages, want %d: deferred mail not retried early (%+v)", flaky.Count(), n+1, q.Stats())
	}
	time.Sleep(300 * time.Millisecond)
	if other.Count() != 0 || q.Stats().Deferred != 1 {
		t.Fatalf("other.test woken too: %d delivered, %+v", other.Count(), q.Stats())
	}
}
