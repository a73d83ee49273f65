package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// receiver is a webhook endpoint that checks signatures and records every
// delivery (duplicates included).
type receiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	fail   int // answer 503 to this many more requests
	got    []queue.Event
	bad    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.fail > 0 {
		rc.fail--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var ev queue.Event
	if !Verify(rc.secret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature)) ||
		json.Unmarshal(body, &ev) != nil || r.Header.Get(HeaderSeq) != ev.Seq {
		rc.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.got = append(rc.got, ev)
}

func (rc *receiver) events() []queue.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]queue.Event(nil), rc.got...)
}

func TestWebhookDownThenUp(t *testing.T) {
	// Reserve a loopback port, then leave it closed: the endpoint is down
	// (connection refused) until the receiver starts listening on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	hook := config.Webhook{Name: "crm", URL: "http://" + addr + "/hook", Secret: "hook-secret",
		Events: []string{"received", "delivered", "bounced"}, MaxBackoff: config.Duration{Duration: 20 * time.Millisecond}}
	w := newWorld(t, testBounceConfig(), []config.Webhook{hook})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.svc.Start(ctx)

	var ids []string
	for i := range 5 {
		id := w.enqueue("marketing", fmt.Sprintf("a%d@example.test", i), fmt.Sprintf("b%d@example.test", i))
		ids = append(ids, id)
		evs := []queue.Event{
			{Type: "delivered", MsgID: id, Recipient: fmt.Sprintf("a%d@example.test", i), Stream: "marketing", Attempt: 1},
			{Type: "deferred", MsgID: id, Recipient: fmt.Sprintf("b%d@example.test", i), Stream: "marketing", Attempt: 1},
			{Type: "bounced", MsgID: id, Recipient: fmt.Sprintf("b%d@example.test", i), Stream: "marketing", Attempt: 2},
		}
		if err := w.q.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	if !testnet.Wait(10*time.Second, func() bool { return w.svc.Webhooks()[0].FailedAttempts >= 3 }) {
		t.Fatal("no failed attempts recorded while the endpoint is down")
	}
	// Restart the service while the endpoint is still down: nothing may be lost.
	cancel()
	if err := w.svc.Close(); err != nil {
		t.Fatal(err)
	}
	w.open([]config.Webhook{hook})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	w.svc.Start(ctx2)

	rc := &receiver{t: t, secret: []byte(hook.Secret), fail: 3}
	srvLn, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(rc)
	srv.Listener = srvLn
	srv.Start()
	defer srv.Close()

	want := map[string]queue.Event{}
	all, err := w.q.Events(ctx2, queue.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range all {
		if ev.Type == "received" || ev.Type == "delivered" || ev.Type == "bounced" {
			want[ev.Seq] = ev
		}
	}
	if len(want) != 5*4 {
		t.Fatalf("%d matching events recorded, want 20", len(want))
	}
	if !testnet.Wait(20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, ev := range rc.events() {
			seen[ev.Seq] = true
		}
		return len(seen) == len(want)
	}) {
		t.Fatalf("receiver got %d distinct events, want %d", len(rc.events()), len(want))
	}
	got := rc.events()
	dups := 0
	seen := map[string]bool{}
	last := map[string]string{}
	for _, ev := range got {
		if _, ok := want[ev.Seq]; !ok {
			t.Errorf("unexpected event %+v (filtered type or unknown)", ev)
		}
		if seen[ev.Seq] {
			dups++
			continue
		}
		seen[ev.Seq] = true
		if ev.Seq <= last[ev.MsgID] {
			t.Errorf("message %s: event %s after %s (out of order)", ev.MsgID, ev.Seq, last[ev.MsgID])
		}
		last[ev.MsgID] = ev.Seq
	}
	rc.mu.Lock()
	bad := rc.bad
	rc.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d requests with a bad signature", bad)
	}
	st := w.svc.Webhooks()[0]
	t.Logf("delivered %d distinct events (%d duplicates), failed attempts after restart %d, last error %q",
		len(seen), dups, st.FailedAttempts, st.LastError)
	if st.FailedAttempts < 3 || st.LastError == "" {
		t.Errorf("stats = %+v: want the 503 answers counted", st)
	}
	if !testnet.Wait(5*time.Second, func() bool { return w.svc.Webhooks()[0].LagSeconds == 0 }) {
		t.Errorf("lag not back to 0 when caught up: %+v", w.svc.Webhooks()[0])
	}
	if w.metric("petrel_webhook_deliveries_total", "webhook", "crm") < float64(len(want)) {
		t.Errorf("petrel_webhook_deliveries_total = %v", w.metric("petrel_webhook_deliveries_total", "webhook", "crm"))
	}
}

func TestSignVerify(t *testing.T) {
	secret := []byte("k")
	body := []byte(`{"type":"bounced"}`)
	sig := Sign(secret, "1700000000", body)
	tests := []struct {
		name, ts, sig string
		body          []byte
		want          bool
	}{
		{"valid", "1700000000", sig, body, true},
		{"other timestamp", "1700000001", sig, body, false},
		{"other body", "1700000000", sig, []byte(`{"type":"delivered"}`), false},
		{"other secret", "1700000000", Sign([]byte("x"), "1700000000", body), body, false},
		{"empty", "1700000000", "", body, false},
	}
	for _, tt := range tests {
		if got := Verify(secret, tt.ts, tt.body, tt.sig); got != tt.want {
			t.Errorf("%s: Verify = %v, want %v", tt.name, got, tt.want)
		}
	}
}
