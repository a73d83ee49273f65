package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/petrel-mta/petrel/config"
)

func TestRequire(t *testing.T) {
	keys := NewKeys([]config.APIKey{
		{Name: "app", Key: "secret-app"},
		{Name: "news", Key: "secret-news", Stream: "marketing"},
	})
	h := keys.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := KeyFrom(r.Context())
		if !ok {
			WriteError(w, 500, "no_key", "no key in context")
			return
		}
		WriteJSON(w, 200, k)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		name       string
		auth       string
		wantStatus int
		wantKey    Key
		wantCode   string
	}{
		{"no header", "", 401, Key{}, "unauthorized"},
		{"wrong scheme", "Basic c2VjcmV0LWFwcA==", 401, Key{}, "unauthorized"},
		{"empty token", "Bearer ", 401, Key{}, "unauthorized"},
		{"wrong key", "Bearer secret-ap", 401, Key{}, "unauthorized"},
		{"prefix of key", "Bearer secret", 401, Key{}, "unauthorized"},
		{"default stream", "Bearer secret-app", 200, Key{Name: "app", Stream: "transactional"}, ""},
		{"key stream", "bearer secret-news", 200, Key{Name: "news", Stream: "marketing"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.wantStatus == 401 {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				var e ErrorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tt.wantCode || e.Error.Message == "" {
					t.Fatalf("error body %s (%v)", body, err)
				}
				return
			}
			var k Key
			if err := json.Unmarshal(body, &k); err != nil || !reflect.DeepEqual(k, tt.wantKey) {
				t.Fatalf("key %+v (%v), want %+v", k, err, tt.wantKey)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 413, "too_large", `body > 10 bytes "x"`)
	if rec.Code != 413 {
		t.Fatalf("code %d", rec.Code)
	}
	want := `{"error":{"code":"too_large","message":"body > 10 bytes \"x\""}}` + "\n"
	if rec.Body.String() != want {
		t.Fatalf("body %q, want %q", rec.Body.String(), want)
	}
}
