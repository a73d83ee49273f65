package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// FuzzHTTP sends arbitrary bodies, path parameters and query strings to
// every route of the template and campaign APIs over a real SQLite store
// and a real queue behind the submitter, with one template, one audience
// and one draft campaign: no panic and no 5xx; an error is
// {"error":{"code","message"}}; a 2xx answer is JSON.
func FuzzHTTP(f *testing.F) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := f.TempDir()
	aud, err := audience.Open(ctx, filepath.Join(dir, "esp.db"), audience.Options{})
	if err != nil {
		f.Fatal(err)
	}
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		f.Fatal(err)
	}
	sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)})
	svc, err := NewService(ctx, aud, sub, func(stream, rcpt string) string { return "https://mail.shop.test/unsubscribe/" + rcpt }, nil)
	if err != nil {
		f.Fatal(err)
	}
	tpls, err := NewTemplates(ctx, aud.DB(), aud.Postgres())
	if err != nil {
		f.Fatal(err)
	}
	svc.SetOptions(Options{Templates: tpls})
	if err := svc.Start(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		cancel()
		svc.Wait()
		q.Close()
		aud.Close()
	})
	a, err := aud.CreateAudience(ctx, audience.Audience{Name: "news", Fields: []audience.Field{{Name: "city", Type: audience.Text}}})
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := aud.UpsertContact(ctx, a.ID, audience.ContactInput{Email: "c@example.test"}); err != nil {
		f.Fatal(err)
	}
	th, ch := tpls.Handler(), svc.Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/templates") {
			th.ServeHTTP(w, r)
			return
		}
		ch.ServeHTTP(w, r)
	})
	for _, r := range []struct{ path, body string }{
		{"/api/v1/templates", `{"call_name":"welcome","name":"Welcome","type":"marketing","subject":"Hi %name%","html":"<p>Hello %name%</p>","text":"Hello %name%","variables":["name"]}`},
		{"/api/v1/campaigns", `{"id":"c1","audience":1,"from":"news@shop.test","subject":"Hello","text":"News\n","postal_address":"Shop Ltd, 1 Harbour Road, Taipei"}`},
	} {
		if code, resp := fuzzServe(h, "POST", r.path, "application/json", []byte(r.body)); code >= 300 {
			f.Fatalf("POST %s: %d %s", r.path, code, resp)
		}
	}
	routes := []fuzzRoute{
		{"POST", "/api/v1/templates", "application/json", []string{`{"call_name":"t2","name":"T","type":"transactional","subject":"Code %code%","text":"%code% %email%","variables":["code"]}`, `{"call_name":"","html":""}`, `{"call_name":"x","text":"%unclosed"}`, `{"version":"one"}`}},
		{"GET", "/api/v1/templates?{p}", "", []string{""}},
		{"GET", "/api/v1/templates/{p}", "", []string{""}},
		{"GET", "/api/v1/templates/{p}/versions", "", []string{""}},
		{"POST", "/api/v1/templates/{p}/preview", "application/json", []string{`{"variables":{"name":"Ann"},"version":1}`, `{"version":-3}`, `{"variables":[1]}`, ``}},
		{"GET", "/api/v1/campaigns?{p}", "", []string{""}},
		{"POST", "/api/v1/campaigns", "application/json", []string{`{"id":"c2","audience":1,"template":"welcome","from":"news@shop.test","postal_address":"Shop Ltd, 1 Harbour Road","page_size":5,"rate":2.5}`, `{"id":"c3","audience":99,"from":"x"}`, `{"id":"","audience":1,"segment":"age <","from":"a@b.test"}`, `{"rate":"fast"}`}},
		{"GET", "/api/v1/campaigns/{p}", "", []string{""}},
		{"POST", "/api/v1/campaigns/{p}/send", "", []string{""}},
		{"POST", "/api/v1/campaigns/{p}/pause", "", []string{""}},
		{"POST", "/api/v1/campaigns/{p}/resume", "", []string{""}},
		{"POST", "/api/v1/campaigns/{p}/cancel", "", []string{""}},
		{"POST", "/api/v1/campaigns/{p}/schedule", "application/json", []string{`{"send_at":"2030-01-02T09:00:00","time_zone":"Asia/Taipei"}`, `{"send_at":"tomorrow"}`, `{"send_at":"2030-01-02T09:00:00","time_zone":"Mars/Olympus"}`, `{"send_at":"2030-01-02T09:00:00","contact_time_zone":true}`}},
		{"POST", "/api/v1/campaigns/{p}/test", "application/json", []string{`{"to":["qa@shop.test"]}`, `{"to":[]}`, `{"to":["not an address"]}`, `{"to":"qa@shop.test"}`}},
		{"POST", "/api/v1/campaigns/{p}/check", "", []string{""}},
	}
	params := []string{"c1", "welcome", "nosuch", "", "status=draft&limit=2", "limit=0", "after=%zz"}
	for i, r := range routes {
		for j, b := range r.seeds {
			f.Add(byte(i), []byte(b), params[(i+j)%len(params)])
		}
	}
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		fuzzRequest(t, h, routes[int(route)%len(routes)], body, param)
	})
}

// fuzzRoute is one route of a fuzzed handler: the method, the path with
// {p} standing for the fuzzed path parameter (escaped) and the query
// appended after it, the Content-Type, and the seed bodies (the first
// one valid).
type fuzzRoute struct {
	method, path, ctype string
	seeds               []string
}

// fuzzRequest serves one fuzzed request of route and checks the answer.
func fuzzRequest(t *testing.T, h http.Handler, r fuzzRoute, body []byte, param string) {
	t.Helper()
	target := r.path
	if strings.Contains(target, "?{p}") {
		target = strings.Replace(target, "{p}", param, 1)
	} else {
		target = strings.Replace(target, "{p}", url.PathEscape(param), 1)
	}
	code, resp := fuzzServe(h, r.method, target, r.ctype, body)
	if code == 0 {
		return
	}
	what := r.method + " " + target + " " + string(body)
	if code >= 500 {
		t.Fatalf("%s: %d %s", what, code, resp)
	}
	if code >= 400 {
		if code == http.StatusNotFound && !bytes.HasPrefix(resp, []byte("{")) {
			return // the mux's own 404 for a path no route matches
		}
		if code == http.StatusMethodNotAllowed && !bytes.HasPrefix(resp, []byte("{")) {
			return // the mux's own 405
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(resp, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s: %d %q, want {\"error\":{\"code\",\"message\"}}", what, code, resp)
		}
		return
	}
	if code >= 300 || code == http.StatusNoContent {
		return // the mux's redirect to a cleaned path; an empty answer
	}
	if ct := code; ct < 300 && !json.Valid(resp) && strings.HasPrefix(r.path, "/api/") && !strings.Contains(target, "format=csv") {
		t.Fatalf("%s: %d with a body that is not JSON: %q", what, code, resp)
	}
}

func fuzzServe(h http.Handler, method, target, ctype string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, "http://petrel.test"+target, bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}
