package ingest

// Benchmarks that measure what one message costs in ingest: bytes and
// allocations per message over SMTP and HTTP, with the real policy
// engine (List-Unsubscribe and DKIM) in the marketing stream. With a
// 256 KiB body the fixed per-message costs are small, so B/op divided by
// the message size is close to the number of full copies made of it.
//
//	go test -run '^$' -bench 'Copies' -benchmem ./ingest/

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/dkim"
)

// copiesBody is the body of the measured message: 256 KiB of short lines.
var copiesBody = strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n", 4096)

// copiesMsg is the measured message (header + copiesBody).
func copiesMsg() []byte {
	return []byte("From: Shop <news@shop.test>\r\nTo: <bob@example.com>\r\nSubject: Offer\r\n" +
		StreamHeader + ": marketing\r\n\r\n" + copiesBody)
}

// realPolicy is the real policy engine with an Ed25519 DKIM key for
// shop.test and List-Unsubscribe for the marketing stream.
func realPolicy(b testing.TB) *policy.Engine {
	b.Helper()
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.Hostname = "mx.petrel.test"
	cfg.DNS.Resolver = "127.0.0.1:1"
	cfg.Sending.UnsubscribeURL = "https://mail.petrel.test"
	cfg.Bounce.Domain = "bounce.petrel.test"
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	if _, err := dkim.Keygen(filepath.Join(cfg.DataDir, "dkim"), "shop.test", "s1", dkim.AlgoEd25519); err != nil {
		b.Fatal(err)
	}
	e, err := policy.New(policy.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkCopiesSMTP submits the message over one loopback SMTP session.
func BenchmarkCopiesSMTP(b *testing.B) {
	cfg := testSMTPConfig()
	cfg.MaxMessageSize = 1 << 20
	pol := realPolicy(b)
	e := startSMTP(b, cfg, func(o *Options) { o.Policy = pol })
	msg := copiesMsg()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("bench.test"); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.SendMail("news@shop.test", []string{"bob@example.com"}, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
	checkSigned(b, e)
}

// BenchmarkCopiesHTTP submits the message as "raw" over the HTTP API
// (handler called in process, no network, so only the server side is
// measured).
func BenchmarkCopiesHTTP(b *testing.B) {
	pol := realPolicy(b)
	q := openQueue(b)
	h := NewHTTPHandler(HTTPOptions{Hostname: "api.petrel.test", Keys: httpapi.NewKeys(testKeys),
		MaxMessageSize: 1 << 20, Spool: q, Policy: pol,
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	body, err := json.Marshal(SendRequest{From: "news@shop.test", To: []string{"bob@example.com"}, Raw: string(copiesMsg())})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(copiesMsg())))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/api/v1/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer app-key")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// checkSigned asserts that the benchmark measured the full path: the
// queued message is DKIM-signed and has List-Unsubscribe.
func checkSigned(b testing.TB, e *smtpEnv) {
	b.Helper()
	rs, _, err := e.q.List(context.Background(), "", 1)
	if err != nil || len(rs) == 0 {
		b.Fatalf("no queued message: %v", err)
	}
	body, err := e.q.Body(rs[0].MsgID)
	if err != nil {
		b.Fatal(err)
	}
	head, _, _ := bytes.Cut(body, []byte("\r\n\r\n"))
	for _, want := range []string{"DKIM-Signature:", "List-Unsubscribe:", "Received:"} {
		if !bytes.Contains(head, []byte(want)) {
			b.Fatalf("queued message lacks %s:\n%s", want, head)
		}
	}
}
