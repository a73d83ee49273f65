package admin

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPublicKeepAliveContext: requests on one keep-alive connection
// after public ones (without a body, and with a body read to its end)
// still get a live context. The guard used to move the read deadline to
// the past after every public request, which failed net/http's
// read-ahead and cancelled the connection's context: the next request on
// the connection (a confirm POST after its GET page) saw "context
// canceled".
func TestPublicKeepAliveContext(t *testing.T) {
	var answers []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		time.Sleep(20 * time.Millisecond) // let a failed read-ahead cancel the context
		answers = append(answers, fmt.Sprint(r.Context().Err()))
		w.Write([]byte("ok"))
	})
	r := New(Options{Confirm: h, Audiences: http.NotFoundHandler(), PublicReadTimeout: 5 * time.Second})
	srv := httptest.NewServer(r)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, req := range []string{
		"GET /confirm/x HTTP/1.1\r\nHost: t\r\n\r\n",
		"POST /confirm/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
		"POST /confirm/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
		"GET /confirm/x HTTP/1.1\r\nHost: t\r\n\r\n",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d answers %v: %v (connection closed)", len(answers), answers, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := strings.Join(answers, ","); got != "<nil>,<nil>,<nil>,<nil>" {
		t.Fatalf("handler contexts: %s, want all live", got)
	}
}

// TestPublicKeepAliveUnsubscribe: after a public request without a body
// (and one with a fully read body), the next request on the same
// keep-alive connection starts with a live context. The public guard
// used to cut the read deadline under net/http's background read, which
// cancelled the connection's context: every later request on it failed
// ("context canceled" from the ESP database) — found by the preference
// centre's daemon test.
func TestPublicKeepAliveUnsubscribe(t *testing.T) {
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
