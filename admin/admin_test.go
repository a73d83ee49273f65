package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/queue"
)

const key = "admin-test-key"

// fixture is the admin router over a real Pebble queue, served by a real
// HTTP server on loopback.
type fixture struct {
	t   *testing.T
	q   *queue.Queue
	srv *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	q, err := queue.Open(t.TempDir(), queue.Options{RetrySchedule: []time.Duration{time.Hour}, MaxLifetime: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	r := New(Options{Keys: httpapi.NewKeys([]config.APIKey{{Name: "t", Key: key}}), Queue: q})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &fixture{t: t, q: q, srv: srv}
}

func (f *fixture) enqueue(rcpts ...string) string {
	f.t.Helper()
	id, err := f.q.Enqueue(context.Background(), queue.Envelope{From: "a@sender.test", Recipients: rcpts, Stream: "transactional"},
		[]byte("From: a@sender.test\r\nSubject: t\r\n\r\nbody\r\n"))
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// do sends a request with the key and decodes the JSON answer into out.
func (f *fixture) do(method, path, body string, out any) int {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

type errBody struct {
	Error struct{ Code, Message string } `json:"error"`
}

func TestQueueListPagingAndStats(t *testing.T) {
	f := newFixture(t)
	id1 := f.enqueue("a@x.test", "b@x.test")
	id2 := f.enqueue("c@y.test")
	var page struct {
		Recipients []queue.RcptInfo `json:"recipients"`
		Next       string           `json:"next"`
	}
	if code := f.do("GET", "/api/v1/queue?limit=2", "", &page); code != 200 || len(page.Recipients) != 2 || page.Next == "" {
		t.Fatalf("first page: %d %+v", code, page)
	}
	seen := map[string]string{}
	for _, r := range page.Recipients {
		seen[r.Addr] = r.MsgID
	}
	next := page.Next
	page.Recipients, page.Next = nil, ""
	if code := f.do("GET", "/api/v1/queue?limit=2&after="+next, "", &page); code != 200 || len(page.Recipients) != 1 {
		t.Fatalf("second page: %d %+v", code, page)
	}
	seen[page.Recipients[0].Addr] = page.Recipients[0].MsgID
	if seen["a@x.test"] != id1 || seen["b@x.test"] != id1 || seen["c@y.test"] != id2 {
		t.Fatalf("recipients over both pages = %v", seen)
	}
	var st queue.Stats
	if code := f.do("GET", "/api/v1/queue/stats", "", &st); code != 200 || st.Queued != 3 || st.Messages != 2 || st.Live != 3 {
		t.Fatalf("stats: %d %+v", code, st)
	}
}

func TestQueueActions(t *testing.T) {
	f := newFixture(t)
	id := f.enqueue("a@x.test", "b@x.test")
	other := f.enqueue("c@y.test")
	type affected struct {
		Affected int `json:"affected"`
	}
	steps := []struct {
		name      string
		path      string
		body      string
		code      int
		affected  int
		errCode   string
		wantStats queue.Stats // compared on Queued, Held, Live
	}{
		{"hold one message", "/api/v1/queue/hold", `{"id":"` + id + `"}`, 200, 2, "", queue.Stats{Queued: 1, Held: 2, Live: 3}},
		{"release it", "/api/v1/queue/release", `{"id":"` + id + `"}`, 200, 2, "", queue.Stats{Queued: 3, Live: 3}},
		{"hold all", "/api/v1/queue/hold", `{"all":true}`, 200, 3, "", queue.Stats{Held: 3, Live: 3}},
		{"release all", "/api/v1/queue/release", `{"all":true}`, 200, 3, "", queue.Stats{Queued: 3, Live: 3}},
		{"flush with nothing deferred", "/api/v1/queue/flush", "", 200, 0, "", queue.Stats{Queued: 3, Live: 3}},
		{"delete one", "/api/v1/queue/delete", `{"id":"` + other + `"}`, 200, 1, "", queue.Stats{Queued: 2, Live: 2}},
		{"delete unknown", "/api/v1/queue/delete", `{"id":"nosuchmessage"}`, 404, 0, "not_found", queue.Stats{Queued: 2, Live: 2}},
		{"hold without id", "/api/v1/queue/hold", `{}`, 400, 0, "invalid_request", queue.Stats{Queued: 2, Live: 2}},
		{"id and all", "/api/v1/queue/hold", `{"id":"` + id + `","all":true}`, 400, 0, "invalid_request", queue.Stats{Queued: 2, Live: 2}},
		{"delete without id", "/api/v1/queue/delete", `{"all":true}`, 400, 0, "invalid_request", queue.Stats{Queued: 2, Live: 2}},
		{"bad JSON", "/api/v1/queue/hold", `{"id":`, 400, 0, "invalid_json", queue.Stats{Queued: 2, Live: 2}},
		{"unknown field", "/api/v1/queue/hold", `{"msg":"x"}`, 400, 0, "invalid_json", queue.Stats{Queued: 2, Live: 2}},
		{"unknown action", "/api/v1/queue/explode", `{}`, 404, 0, "not_found", queue.Stats{Queued: 2, Live: 2}},
		{"body over the 4 KiB cap", "/api/v1/queue/hold", `{"id":"` + strings.Repeat("x", 5000) + `"}`, 413, 0, "body_too_large", queue.Stats{Queued: 2, Live: 2}},
	}
	for _, s := range steps {
		var a affected
		var e errBody
		var out any = &a
		if s.errCode != "" {
			out = &e
		}
		code := f.do("POST", s.path, s.body, out)
		if code != s.code || a.Affected != s.affected || e.Error.Code != s.errCode {
			t.Fatalf("%s: %d affected=%d error=%+v; want %d affected=%d error %q", s.name, code, a.Affected, e.Error, s.code, s.affected, s.errCode)
		}
		st := f.q.Stats()
		if st.Queued != s.wantStats.Queued || st.Held != s.wantStats.Held || st.Live != s.wantStats.Live {
			t.Fatalf("%s: queue stats %+v, want queued %d held %d live %d", s.name, st, s.wantStats.Queued, s.wantStats.Held, s.wantStats.Live)
		}
	}
}

func TestEventLog(t *testing.T) {
	f := newFixture(t)
	id := f.enqueue("a@x.test", "b@x.test")
	f.enqueue("c@y.test")
	var evs struct {
		Events []queue.Event `json:"events"`
		Next   string        `json:"next"`
	}
	if code := f.do("GET", "/api/v1/events?type=received&recipient=b@x.test", "", &evs); code != 200 || len(evs.Events) != 1 || evs.Events[0].MsgID != id {
		t.Fatalf("filtered events: %d %+v", code, evs)
	}
	evs.Events = nil
	if code := f.do("GET", "/api/v1/events?type=received&limit=2&since=1h", "", &evs); code != 200 || len(evs.Events) != 2 || evs.Next == "" {
		t.Fatalf("page of 2: %d %+v", code, evs)
	}
	next := evs.Next
	evs.Events, evs.Next = nil, ""
	if code := f.do("GET", "/api/v1/events?type=received&limit=2&after="+next, "", &evs); code != 200 || len(evs.Events) != 1 || evs.Next != "" {
		t.Fatalf("last page: %d %+v", code, evs)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	evs.Events = nil
	if code := f.do("GET", "/api/v1/events?since="+future, "", &evs); code != 200 || len(evs.Events) != 0 {
		t.Fatalf("since the future: %d %+v", code, evs)
	}
	for _, q := range []string{"since=yesterday", "limit=0", "limit=x"} {
		var e errBody
		if code := f.do("GET", "/api/v1/events?"+q, "", &e); code != 400 || e.Error.Code != "invalid_request" {
			t.Errorf("?%s: %d %+v, want 400 invalid_request", q, code, e)
		}
	}
}

// TestClosedQueueIs503: once the queue is closed (shutdown), the API says
// so instead of failing obscurely.
func TestClosedQueueIs503(t *testing.T) {
	f := newFixture(t)
	f.q.Close()
	var e errBody
	if code := f.do("GET", "/api/v1/queue", "", &e); code != http.StatusServiceUnavailable || e.Error.Code != "shutting_down" {
		t.Fatalf("list on a closed queue: %d %+v", code, e)
	}
}

// TestMountsOnlyGivenResources: a resource whose handler is nil is not
// mounted (its paths fall to the key-checked 404), and Routes says what is.
func TestMountsOnlyGivenResources(t *testing.T) {
	sub := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, 200, map[string]string{"served": r.URL.Path})
	})
	r := New(Options{Keys: httpapi.NewKeys([]config.APIKey{{Key: key}}), Events: sub})
	var pats []string
	for _, rt := range r.Routes() {
		pats = append(pats, rt.Pattern)
	}
	want := "GET /api/v1/webhooks,GET /api/v1/stats,POST /api/v1/streams/{stream}/resume,GET /healthz"
	if strings.Join(pats, ",") != want {
		t.Fatalf("routes = %v, want %s", pats, want)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/api/v1/stats", 200},
		{"POST", "/api/v1/streams/marketing/resume", 200},
		{"GET", "/api/v1/queue", 404},
		{"GET", "/metrics", 404},
		{"GET", "/debug/pprof/", 404},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, bytes.NewReader(nil))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
	}
}

// TestMetricsLoopbackOnly: with access "loopback" a client from another
// address is refused, whatever it claims in X-Forwarded-For.
func TestMetricsLoopbackOnly(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "petrel_x 1\n") })
	r := New(Options{Metrics: metrics, MetricsAccess: config.MetricsLoopback})
	for _, tt := range []struct {
		remote string
		code   int
	}{
		{"127.0.0.1:5000", 200},
		{"127.8.9.10:5000", 200},
		{"[::1]:5000", 200},
		{"192.0.2.7:5000", 403},
		{"[2001:db8::1]:5000", 403},
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = tt.remote
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tt.code {
			t.Errorf("/metrics from %s = %d, want %d", tt.remote, w.Code, tt.code)
		}
	}
}

// TestMessageLookup: GET /api/v1/messages/{id} answers a queued message's
// recipients from the real queue, 404 for an unknown id.
func TestMessageLookup(t *testing.T) {
	f := newFixture(t)
	id := f.enqueue("a@x.test", "b@y.test")
	var mi queue.MessageInfo
	if code := f.do("GET", "/api/v1/messages/"+id, "", &mi); code != 200 || mi.ID != id || len(mi.Recipients) != 2 ||
		mi.Recipients[0].Addr != "a@x.test" || mi.Recipients[1].State != queue.StateQueued {
		t.Fatalf("GET message: %d %+v", code, mi)
	}
	var e httpapi.ErrorBody
	if code := f.do("GET", "/api/v1/messages/nope", "", &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("unknown id: %d %+v", code, e)
	}
}
