package events

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/queue"
)

// world is a real queue, a real policy engine, a real shaper and the
// service, on disk in a test directory.
type world struct {
	t   testing.TB
	dir string
	q   *queue.Queue
	pol *policy.Engine
	svc *Service
	// sh is the shaper of the current service (open makes a new one, as a
	// restart of petreld does); shaping is its [shaping] section.
	sh      *shaping.Shaper
	shaping config.ShapingConfig
	reg     *prometheus.Registry
	verp    bounce.VERP
	bc      config.BounceConfig
}

func testBounceConfig() config.BounceConfig {
	bc := config.Default().Bounce
	bc.Domain, bc.Secret = "bounce.petrel.test", "verp-secret"
	bc.FBLAddresses = []string{"fbl@petrel.test"}
	return bc
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newWorld opens everything; hooks are webhooks (may be nil).
func newWorld(t testing.TB, bc config.BounceConfig, hooks []config.Webhook) *world {
	t.Helper()
	return newWorldClock(t, bc, hooks, time.Now)
}

// newWorldClock is newWorld with the queue's clock (its events' times and
// sequence numbers) set to now.
func newWorldClock(t testing.TB, bc config.BounceConfig, hooks []config.Webhook, now func() time.Time) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), bc: bc, verp: bounce.VERP{Domain: bc.Domain, Secret: []byte(bc.Secret)},
		shaping: config.Default().Shaping}
	q, err := queue.Open(filepath.Join(w.dir, "queue"), queue.Options{Logger: quietLog(), Now: now,
		OnEvent: func(ev queue.Event) {
			if w.svc != nil {
				w.svc.OnEvent(ev)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	w.q = q
	t.Cleanup(func() { q.Close() })
	cfg := config.Default()
	cfg.DataDir = filepath.Join(w.dir, "policy")
	pol, err := policy.New(policy.Options{Config: cfg, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	w.pol = pol
	t.Cleanup(func() { pol.Close() })
	w.open(hooks)
	return w
}

// open (re)creates the shaper and the service over the same store
// directory.
func (w *world) open(hooks []config.Webhook) {
	w.t.Helper()
	w.reg = prometheus.NewRegistry()
	sh, err := shaping.New(w.shaping, "petrel.test", quietLog(), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	w.sh = sh
	svc, err := New(Options{Bounce: w.bc, Webhooks: hooks, Queue: w.q, Suppressor: w.pol, Shaper: sh,
		Dir: filepath.Join(w.dir, "feedback"), Registry: w.reg, Logger: quietLog(), RetryBase: 5 * time.Millisecond})
	if err != nil {
		w.t.Fatal(err)
	}
	w.svc = svc
	w.t.Cleanup(func() { svc.Close() })
}

// enqueue stores a message and returns its ID.
func (w *world) enqueue(stream string, rcpts ...string) string {
	w.t.Helper()
	id, err := w.q.Enqueue(context.Background(), queue.Envelope{From: "news@sender.test", Recipients: rcpts, Stream: stream, Campaign: "c1"},
		[]byte("From: news@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

// events returns every event of type typ.
func (w *world) events(typ string) []queue.Event {
	w.t.Helper()
	evs, err := w.q.Events(context.Background(), queue.EventFilter{Type: typ, Limit: 1000})
	if err != nil {
		w.t.Fatal(err)
	}
	return evs
}

func (w *world) suppressed(stream, addr string) bool {
	_, ok := w.pol.Suppressed(stream, addr)
	return ok
}

// metric returns the value of a counter or gauge (summed over labels
// matching every given label pair).
func (w *world) metric(name string, labels ...string) float64 {
	w.t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// report fills testdata/<name>.eml (shared with cmd/petreld's end-to-end
// tests) and returns it with CRLF line ends. Fields: TO (envelope
// recipient), RP (original return path), RCPT, ACTION, STATUS, DIAG.
func report(name string, fields map[string]string) []byte {
	raw, err := os.ReadFile(filepath.Join("testdata", name+".eml"))
	if err != nil {
		panic(err)
	}
	var pairs []string
	for k, v := range fields {
		pairs = append(pairs, "{{"+k+"}}", v)
	}
	s := strings.NewReplacer(pairs...).Replace(string(raw))
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// dsn is an RFC 3464 report to returnPath about rcpt.
func dsn(returnPath, rcpt, action, status, diag string) []byte {
	return report("dsn", map[string]string{"TO": returnPath, "RP": returnPath, "RCPT": rcpt,
		"ACTION": action, "STATUS": status, "DIAG": diag})
}

// arf is an RFC 5965 complaint about rcpt for a message sent with
// returnPath.
func arf(to, returnPath, rcpt string) []byte {
	return arfType("abuse", to, returnPath, rcpt)
}

// arfType is an RFC 5965 report of the given Feedback-Type.
func arfType(feedbackType, to, returnPath, rcpt string) []byte {
	return report("arf", map[string]string{"TO": to, "RP": returnPath, "RCPT": rcpt, "FT": feedbackType})
}

// autoReply is an RFC 3834 vacation reply.
func autoReply(to, from string) []byte {
	return report("autoreply", map[string]string{"TO": to, "RCPT": from})
}
