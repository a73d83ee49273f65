package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync/atomic"
	"testing"
)

// contractServer checks each request against the POST /api/v1/messages
// contract (bearer key, strict JSON, a raw message that parses) and
// answers with status(i) for the i-th request.
func contractServer(t *testing.T, status func(i int64) int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1) - 1
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/messages" {
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		}
		if r.Header.Get("Authorization") != "Bearer k1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req injectRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Errorf("bad JSON: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m, err := mail.ReadMessage(strings.NewReader(req.Raw))
		if err != nil || m.Header.Get("Message-ID") == "" || req.From != "bench@bench.test" || len(req.To) == 0 {
			t.Errorf("bad message: %v %+v", err, req.To)
		}
		code := status(i)
		w.WriteHeader(code)
		if code == http.StatusAccepted {
			var resp InjectResponse
			for _, to := range req.To {
				resp.Recipients = append(resp.Recipients, struct {
					Address string `json:"address"`
					Status  string `json:"status"`
				}{to, "queued"})
			}
			resp.ID = "m1"
			_ = json.NewEncoder(w).Encode(resp)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRunHTTP(t *testing.T) {
	tests := []struct {
		name               string
		key                string
		msgs, rcpts        int
		status             func(i int64) int
		ok, temp, perm     int64
		wantRecipientTotal int64
	}{
		{"all accepted", "k1", 40, 3, func(int64) int { return 202 }, 40, 0, 0, 120},
		{"wrong key", "nope", 5, 1, func(int64) int { return 202 }, 0, 0, 5, 0},
		{"every fourth 429", "k1", 40, 1, func(i int64) int {
			if i%4 == 0 {
				return 429
			}
			return 202
		}, 30, 10, 0, 30},
		{"5xx temp 4xx perm", "k1", 20, 1, func(i int64) int {
			switch i % 2 {
			case 0:
				return 503
			}
			return 422
		}, 0, 10, 10, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, n := contractServer(t, tc.status)
			res, err := RunHTTP(context.Background(), HTTPLoad{BaseURL: srv.URL, Key: tc.key, Sessions: 4, Messages: tc.msgs, Size: 800, Recipients: tc.rcpts})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != tc.ok || res.TempFailed != tc.temp || res.PermFailed != tc.perm || res.Errors != 0 {
				t.Errorf("result ok %d temp %d perm %d errors %d (%v), want %d %d %d", res.Accepted, res.TempFailed, res.PermFailed, res.Errors, res.FirstErr, tc.ok, tc.temp, tc.perm)
			}
			if res.Recipients != tc.wantRecipientTotal || len(res.Latencies) != int(tc.ok) {
				t.Errorf("recipients %d latencies %d", res.Recipients, len(res.Latencies))
			}
			if n.Load() != int64(tc.msgs) {
				t.Errorf("server saw %d requests, want %d", n.Load(), tc.msgs)
			}
		})
	}
}
