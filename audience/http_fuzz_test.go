package audience

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
)

// fuzzRoute is one route of a fuzzed handler: the method, the path with
// {p} standing for the fuzzed path parameter (escaped) and the query
// appended after it, the Content-Type, and the seed bodies (the first
// one valid).
type fuzzRoute struct {
	method, path, ctype string
	seeds               []string
}

// FuzzHTTP sends arbitrary bodies, path parameters and query strings to
// every route of the audience API over a real SQLite store holding one
// audience with one contact and one saved segment: no panic and no 5xx;
// an error is {"error":{"code","message"}}; a 2xx answer is JSON.
func FuzzHTTP(f *testing.F) {
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	dir := f.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "esp.db"), Options{ImportDir: filepath.Join(dir, "imports")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := Handler(s, HandlerOptions{Context: ctx, Logger: slog.New(slog.DiscardHandler)})
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/v1/audiences", `{"name":"news","fields":[{"name":"city","type":"text"}]}`},
		{"POST", "/api/v1/audiences/1/contacts", `{"email":"a@x.test","name":"A","fields":{"city":"Oslo"}}`},
		{"POST", "/api/v1/audiences/1/segments", `{"name":"oslo","expression":"city == \"Oslo\""}`},
	} {
		if code, resp := fuzzServe(h, r.method, r.path, "application/json", []byte(r.body)); code >= 300 {
			f.Fatalf("%s %s: %d %s", r.method, r.path, code, resp)
		}
	}
	routes := []fuzzRoute{
		{"GET", "/api/v1/audiences?{p}", "", []string{""}},
		{"POST", "/api/v1/audiences", "application/json", []string{`{"name":"b","double_opt_in":true}`, `{"name":`, `{"nme":"x"}`, `{"name":"c","fields":[{"name":"","type":"blob"}]}`}},
		{"GET", "/api/v1/audiences/{p}", "", []string{""}},
		{"DELETE", "/api/v1/audiences/{p}", "", []string{""}},
		{"POST", "/api/v1/audiences/{p}/fields", "application/json", []string{`{"fields":[{"name":"zip","type":"text"}]}`, `{"fields":[{"name":"email","type":"number"}]}`, `{"fields":null}`}},
		{"GET", "/api/v1/audiences/{p}/contacts", "", []string{""}},
		{"POST", "/api/v1/audiences/{p}/contacts", "application/json", []string{`{"email":"b@x.test","age":30,"fields":{"city":"Rome"}}`, `{"email":"not an address"}`, `{"email":"c@x.test","fields":{"nosuch":1}}`, `{"email":"d@x.test","birthday":"31-02-2000"}`}},
		{"PUT", "/api/v1/audiences/{p}/contacts", "application/json", []string{`{"contacts":[{"email":"e@x.test"},{"email":"bad"}],"on_duplicate":"update","tags":"add"}`, `{"contacts":[],"on_duplicate":"explode"}`, `{"contacts":{}}`}},
		{"GET", "/api/v1/audiences/1/contacts/{p}", "", []string{""}},
		{"PATCH", "/api/v1/audiences/1/contacts/{p}", "application/json", []string{`{"name":"B","status":"unsubscribed"}`, `{"status":"nosuch"}`, `{"email":1}`}},
		{"DELETE", "/api/v1/audiences/1/contacts/{p}", "", []string{""}},
		{"POST", "/api/v1/audiences/{p}/tags", "application/json", []string{`{"contact_ids":[1],"add":["vip"],"remove":["old"]}`, `{"contact_ids":[-1,0],"add":[""]}`, `{"add":"vip"}`}},
		{"GET", "/api/v1/audiences/{p}/segments", "", []string{""}},
		{"POST", "/api/v1/audiences/{p}/segments", "application/json", []string{`{"name":"young","expression":"age < 30"}`, `{"name":"x","expression":"age <"}`, `{"name":"","expression":""}`}},
		{"POST", "/api/v1/audiences/{p}/segments/count", "application/json", []string{`{"expression":"\"vip\" in tags || city == \"Oslo\""}`, `{"expression":"((("}`, `{"expression":1}`}},
		{"POST", "/api/v1/audiences/{p}/segments/preview", "application/json", []string{`{"expression":"age > 1","limit":5}`, `{"expression":"age > 1","limit":-1}`, `{"expression":"nosuch == 1"}`}},
		{"GET", "/api/v1/audiences/1/segments/{p}", "", []string{""}},
		{"DELETE", "/api/v1/audiences/1/segments/{p}", "", []string{""}},
		{"GET", "/api/v1/audiences/1/segments/{p}/count", "", []string{""}},
		{"GET", "/api/v1/audiences/1/segments/1/preview?{p}", "", []string{""}},
		{"POST", "/api/v1/audiences/1/imports?{p}", "text/csv", []string{"email,city\nf@x.test,Oslo\n", "email\n\"unterminated\n", ""}},
		{"GET", "/api/v1/imports/{p}", "", []string{""}},
		{"GET", "/api/v1/imports/1/errors?{p}", "", []string{""}},
		{"GET", "/api/v1/audiences/1/contacts/{p}/consent", "", []string{""}},
		{"POST", "/api/v1/audiences/1/contacts/{p}/consent", "application/json", []string{`{"purpose":"newsletter","action":"grant","source":"form","ip":"192.0.2.1","text_version":"v1"}`, `{"purpose":"","action":"maybe"}`, `{"ip":"not an ip","action":"grant","purpose":"x"}`, `{"at":"yesterday"}`}},
		{"GET", "/api/v1/audiences/1/contacts/{p}/export", "", []string{""}},
		{"POST", "/api/v1/audiences/1/contacts/{p}/erase", "", []string{""}},
		{"GET", "/api/v1/audiences/{p}/opt-in", "", []string{""}},
		{"PUT", "/api/v1/audiences/{p}/opt-in", "application/json", []string{`{"subject":"Confirm","text":"Click {{confirm_url}}"}`, `{"subject":1}`, `[`}},
		{"GET", "/api/v1/audiences/1/jobs/{p}", "", []string{""}},
		{"GET", "/api/v1/audiences/1/jobs/1/errors?{p}", "", []string{""}},
		{"POST", "/api/v1/audiences/{p}/cleanings", "application/json", []string{`{"segment":1,"older_than":"720h"}`, `{"older_than":"soon"}`, `{}`}},
		{"GET", "/api/v1/audiences/1/cleanings/{p}", "", []string{""}},
		{"GET", "/api/v1/audiences/1/contacts/{p}/verification", "", []string{""}},
	}
	params := []string{"1", "0", "-1", "99999999999999999999", "abc", "after=1&limit=2", "limit=-5&format=csv"}
	for i, r := range routes {
		for j, b := range r.seeds {
			f.Add(byte(i), []byte(b), params[(i+j)%len(params)])
		}
	}
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		fuzzRequest(t, h, routes[int(route)%len(routes)], body, param)
	})
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
