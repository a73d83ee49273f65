package flow

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestHTTPAPI: the flow API over a real loopback HTTP server: TOML and
// JSON saves (201, versions), protocol errors (400 with invalid_json,
// invalid_toml or invalid_flow naming the step, 404 for unknown flows
// and contacts), custom events (202), stats and journey.
func TestHTTPAPI(t *testing.T) {
	fx := newFixture(t, filepath.Join(t.TempDir(), "esp.db"), Options{})
	srv := httptest.NewServer(fx.svc.Handler())
	defer srv.Close()
	call := func(method, path, ctype string, body []byte) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
	errCode := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}
	toml, _ := os.ReadFile(filepath.Join("..", "..", "examples", "flows", "welcome.toml"))
	if code, m := call("POST", "/api/v1/flows", "application/toml", toml); code != 201 || m["version"] != float64(2) {
		t.Fatalf("TOML save: %d %v", code, m)
	}
	cases := []struct {
		method, path, ctype, body string
		code                      int
		err                       string
	}{
		{"POST", "/api/v1/flows", "application/json", `{"id":`, 400, "invalid_json"},
		{"POST", "/api/v1/flows", "application/json", `{"id":"x","bogus":1}`, 400, "invalid_json"},
		{"POST", "/api/v1/flows", "application/toml", "id = [", 400, "invalid_toml"},
		{"POST", "/api/v1/flows", "application/json", `{"id":"x","audience_name":"newsletter","from":"a@b.example","trigger":{"type":"joined"},"steps":[{"id":"a","type":"send","template":"nope"}]}`, 400, "invalid_flow"},
		{"PUT", "/api/v1/flows/other", "application/json", `{"id":"x"}`, 400, "invalid_request"},
		{"GET", "/api/v1/flows/nope", "", "", 404, "not_found"},
		{"GET", "/api/v1/flows/nope/stats", "", "", 404, "not_found"},
		{"POST", "/api/v1/events/custom", "application/json", `{"contact":"nobody@example.test","name":"x"}`, 404, "unknown_contact"},
		{"POST", "/api/v1/events/custom", "application/json", `{"contact":"not an address","name":"x"}`, 400, "invalid_flow"},
		{"POST", "/api/v1/events/custom", "application/json", `{"contact":"a@example.test","name":"bad name!"}`, 400, "invalid_flow"},
		{"GET", "/api/v1/flows/journey?email=nobody@example.test", "", "", 404, "unknown_contact"},
	}
	for _, c := range cases {
		code, m := call(c.method, c.path, c.ctype, []byte(c.body))
		if code != c.code || errCode(m) != c.err {
			t.Errorf("%s %s %s: %d %v, want %d %s", c.method, c.path, c.body, code, m, c.code, c.err)
		}
	}
	fx.contact("ada@example.test")
	if code, m := call("POST", "/api/v1/events/custom", "application/json", []byte(`{"contact":"ada@example.test","name":"cart_abandoned","properties":{"cart_url":"u"}}`)); code != 202 {
		t.Fatalf("event: %d %v", code, m)
	}
	fx.run()
	if code, m := call("GET", "/api/v1/flows/abandoned-cart/stats", "", nil); code != 200 || m["entered"] != float64(1) {
		t.Fatalf("stats: %d %v", code, m)
	}
	if code, m := call("GET", "/api/v1/flows/journey?email=ada@example.test", "", nil); code != 200 || len(m["journey"].([]any)) < 3 {
		t.Fatalf("journey: %d %v", code, m)
	}
	if code, m := call("GET", "/api/v1/flows", "", nil); code != 200 || len(m["flows"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, m)
	}
	if code, _ := call("DELETE", "/api/v1/flows/welcome", "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := call("GET", "/api/v1/flows/welcome", "", nil); code != 404 {
		t.Fatalf("get deleted: %d", code)
	}
}
