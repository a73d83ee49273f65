package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

func TestRunShutdown(t *testing.T) {
	tests := []struct {
		name      string
		hold      time.Duration // how long the MX sits on the message
		shutdown  time.Duration
		wantState queue.RcptState
		maxWait   time.Duration
	}{
		{"in-flight transaction finishes", 300 * time.Millisecond, 3 * time.Second, queue.StateDelivered, 2500 * time.Millisecond},
		{"cut off after shutdown timeout", 10 * time.Second, 200 * time.Millisecond, queue.StateDeferred, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.dns.Add("sd.test. 300 IN MX 10 mx.sd.test.", "mx.sd.test. 300 IN A 127.0.0.2")
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			f.startMX(t, "127.0.0.2", testnet.MXOptions{Script: testnet.MXScript{
				OnData: func(string, []string, []byte) error {
					entered <- struct{}{}
					select {
					case <-time.After(tc.hold):
					case <-release:
					}
					return nil
				}}})
			q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Hour}, MaxLifetime: 24 * time.Hour,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			id, err := q.Enqueue(context.Background(), queue.Envelope{From: "s@src.test", Recipients: []string{"a@sd.test"}}, []byte(testBody))
			if err != nil {
				t.Fatal(err)
			}
			d := f.deliverer(t, func(o *Options) { o.Config.ShutdownTimeout.Duration = tc.shutdown })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, q) }()
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatal("message never reached the MX")
			}
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(tc.maxWait):
				t.Fatalf("Run still running %v after cancel", tc.maxWait)
			}
			if el := time.Since(start); tc.wantState == queue.StateDelivered && el < tc.hold/2 {
				t.Fatalf("Run returned after %v, before the in-flight transaction ended", el)
			}
			info, err := q.Message(id)
			if err != nil {
				t.Fatal(err)
			}
			if st := info.Recipients[0].State; st != tc.wantState {
				t.Fatalf("state %s, want %s (%+v)", st, tc.wantState, info.Recipients[0])
			}
		})
	}
}

func TestOneLogLinePerRecipient(t *testing.T) {
	f := newFixture(t)
	f.dns.Add("log.test. 300 IN MX 10 mx.log.test.", "mx.log.test. 300 IN A 127.0.0.2")
	f.startMX(t, "127.0.0.2", testnet.MXOptions{Script: testnet.MXScript{
		OnRcpt: func(rcpt string, _ int) error {
			if strings.HasPrefix(rcpt, "bad") {
				return testnet.Reply(550, "5.1.1", "unknown")
			}
			return nil
		}}})
	var buf bytes.Buffer
	d := f.deliverer(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&buf, nil)) })
	d.Deliver(context.Background(), batch("log.test", "a@log.test", "bad@log.test", "c@log.test"), []byte(testBody))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), buf.String())
	}
	want := map[string]string{"a@log.test": "delivered", "bad@log.test": "bounced", "c@log.test": "delivered"}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"msg_id", "rcpt", "remote", "code", "enhanced", "reply", "outcome", "duration"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line without %q: %s", k, l)
			}
		}
		if rc, _ := m["rcpt"].(string); m["outcome"] != want[rc] {
			t.Errorf("line %s: outcome %v, want %s", l, m["outcome"], want[rc])
		}
	}
}
