package shaping

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/delivery"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/queue"
)

// TestLimitsHoldThroughDelivery runs the real pipeline: 2,000 messages in
// a Pebble queue, delivery.Run with this Shaper, three domains whose MX
// host shares one suffix, one MX counting connections on loopback.
func TestLimitsHoldThroughDelivery(t *testing.T) {
	const (
		n       = 2000
		connLim = 3
		perConn = 20
		msgRate = 800.0
		window  = 250 * time.Millisecond
	)
	port, err := testnet.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var (
		connMu    sync.Mutex
		connStart = map[int]time.Time{}
	)
	mx, err := testnet.StartMX(testnet.MXOptions{Addr: "127.0.0.1:" + strconv.Itoa(port), Domain: "mx1.bigmail.test",
		Script: testnet.MXScript{OnConnect: func(conn int) error {
			connMu.Lock()
			connStart[conn] = time.Now()
			connMu.Unlock()
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mx.Close()
	dns, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dns.Add("mx1.bigmail.test. 300 IN A 127.0.0.1")
	for _, d := range []string{"a.test", "b.test", "c.test"} {
		dns.Add(d + ". 300 IN MX 10 mx1.bigmail.test.")
	}
	res, err := delivery.NewResolver(dns.Addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := newShaper(t, "[shaping]\nmax_wait = \"30s\"\n"+bigmailRule(connLim, perConn, msgRate, `idle_timeout = "20ms"`))

	q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{50 * time.Millisecond},
		MaxLifetime: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				env := queue.Envelope{From: "s@src.test", Stream: "marketing",
					Recipients: []string{fmt.Sprintf("u%d@%c.test", i, 'a'+i%3)}}
				if _, err := q.Enqueue(ctx, env, []byte("Subject: t\r\n\r\nhello\r\n")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	dc := config.Default().Delivery
	dc.SMTPPort = port
	dc.Workers = 8
	dc.IdleTimeout.Duration = 20 * time.Millisecond
	dc.ShutdownTimeout.Duration = 2 * time.Second
	d, err := delivery.New(delivery.Options{Hostname: "petrel.test", Config: dc, Resolver: res, Shaper: sh,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(runCtx, q) }()
	drained := testnet.Wait(40*time.Second, func() bool { return mx.Count() >= n })
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !drained {
		t.Fatalf("MX got %d of %d; queue %+v", mx.Count(), n, q.Stats())
	}
	// Concurrency: each connection is busy from its accept to its last
	// accepted message, all the while holding a connection permit, so no
	// more than connection_limit of these intervals may overlap. (The MX's
	// own open-socket count can briefly read one more: go-smtp sends 221
	// to QUIT before it ends the session, and delivery releases the permit
	// on the 221, so a new connection may be accepted first.)
	total, tcpMax := mx.Conns()
	mails := mx.Mails()
	worst := checkMails(t, mails, perConn, msgRate, window)
	lastMail := map[int]time.Time{}
	for _, m := range mails {
		if m.Time.After(lastMail[m.Conn]) {
			lastMail[m.Conn] = m.Time
		}
	}
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	connMu.Lock()
	for c, end := range lastMail {
		edges = append(edges, edge{connStart[c], 1}, edge{end, -1})
	}
	connMu.Unlock()
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta // ends before starts at the same instant
	})
	maxConc, cur := 0, 0
	for _, e := range edges {
		cur += e.delta
		maxConc = max(maxConc, cur)
	}
	if maxConc > connLim {
		t.Errorf("%d connections busy at once > connection_limit %d", maxConc, connLim)
	}
	t.Logf("delivery.Run: %d msgs in %v over %d connections (max %d busy at once, %d open sockets), busiest %v window %d msgs",
		mx.Count(), elapsed, total, maxConc, tcpMax, window, worst)
}
