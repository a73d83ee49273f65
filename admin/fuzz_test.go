package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/queue"
)

// FuzzQueueAPI sends arbitrary JSON bodies to the queue actions and
// arbitrary query values to the list and event routes of a real queue:
// no panic and no 5xx; errors are {"error":{"code","message"}}; a 200
// action answer carries its "affected" count.
func FuzzQueueAPI(f *testing.F) {
	q, err := queue.Open(f.TempDir(), queue.Options{ScanInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	id, err := q.Enqueue(context.Background(), queue.Envelope{From: "s@src.test", Recipients: []string{"a@x.test", "b@y.test"}}, []byte("body"))
	if err != nil {
		f.Fatal(err)
	}
	h := New(Options{Keys: httpapi.NewKeys([]config.APIKey{{Name: "fuzz", Key: fuzzKey}}), Queue: q})
	for _, s := range []struct{ action, body, query string }{
		{"hold", `{"id":"` + id + `"}`, ""},
		{"release", `{"all":true}`, ""},
		{"hold", `{"id":"x","all":true}`, ""},
		{"delete", `{}`, ""},
		{"delete", `{"id":"00000000000000000000000000"}`, ""},
		{"flush", ``, "limit=2"},
		{"flush", `{"id":1}`, "after=" + id + ".0"},
		{"nosuch", `{"all":false} {}`, "since=1h&type=received"},
		{"release", `{"unknown":true}`, "since=-5&limit=0"},
		{"hold", `[`, "after=zz&recipient=a@x.test&campaign=c"},
	} {
		f.Add(s.action, []byte(s.body), s.query)
	}
	f.Fuzz(func(t *testing.T, action string, body []byte, query string) {
		path := "/api/v1/queue/" + url.PathEscape(action)
		code, resp := serve(h, "POST", path, body)
		if code != 0 {
			check(t, "POST "+path+" "+string(body), code, resp)
			if code == http.StatusOK {
				var out struct{ Affected *int }
				if err := json.Unmarshal(resp, &out); err != nil || out.Affected == nil || *out.Affected < 0 {
					t.Fatalf("POST %s %q: 200 %s, want {\"affected\": n}", path, body, resp)
				}
			}
		}
		for _, p := range []string{"/api/v1/queue?", "/api/v1/events?"} {
			if code, resp := serve(h, "GET", p+query, nil); code != 0 {
				check(t, "GET "+p+query, code, resp)
			}
		}
	})
}

// fuzzKey is the API key the fuzzed requests carry.
const fuzzKey = "fuzz-key"

func serve(h http.Handler, method, target string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, "http://petrel.test"+target, bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+fuzzKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// check fails t on a 5xx, on an error answer that is not
// {"error":{"code","message"}}, and on a 2xx answer that is not JSON.
func check(t *testing.T, what string, code int, body []byte) {
	t.Helper()
	if code >= 500 {
		t.Fatalf("%s: %d %s", what, code, body)
	}
	if code >= 400 {
		if code == http.StatusNotFound && !strings.HasPrefix(string(body), "{") {
			return // the mux's own 404 for a path no route matches
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s: %d %q, want {\"error\":{\"code\",\"message\"}}", what, code, body)
		}
		return
	}
	if code >= 300 {
		return // the mux's redirect to a cleaned path ("/api/v1/queue/." -> "/api/v1/queue/")
	}
	if !json.Valid(body) {
		t.Fatalf("%s: %d with a body that is not JSON: %q", what, code, body)
	}
}
