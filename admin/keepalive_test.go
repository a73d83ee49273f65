package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPublicKeepAliveContext: after a public request without a body
// (and one with a fully read body), the next request on the same
// keep-alive connection starts with a live context. The public guard
// used to cut the read deadline under net/http's background read, which
// cancelled the connection's context: every later request on it failed
// ("context canceled" from the ESP database) — found by the preference
// centre's daemon test.
func TestPublicKeepAliveContext(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond) // let a background read's error land
		if err := r.Context().Err(); err != nil {
			http.Error(w, "context: "+err.Error(), 500)
			return
		}
		w.Write([]byte("ok"))
	})
	srv := httptest.NewServer(New(Options{Unsubscribe: h, PublicReadTimeout: 5 * time.Second}))
	defer srv.Close()
	c := srv.Client()
	for i, m := range []string{"GET", "GET", "POST", "GET", "POST", "GET"} {
		var body io.Reader
		if m == "POST" {
			body = strings.NewReader("List-Unsubscribe=One-Click")
		}
		req, _ := http.NewRequest(m, srv.URL+"/unsubscribe/tok", body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d (%s) on the kept-alive connection: %d %s", i, m, resp.StatusCode, b)
		}
	}
}
