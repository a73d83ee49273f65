package policy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/policy/suppress"
)

// fuzzRoutes are the policy API requests FuzzHTTP drives: the JSON and
// CSV bodies of the suppression and domain endpoints, and path and query
// values of the rest. "%s" is replaced by the fuzzed string (escaped).
var fuzzRoutes = []struct{ method, path, ctype string }{
	{"POST", "/api/v1/suppressions", "application/json"},
	{"POST", "/api/v1/suppressions/import?source=%s", "text/csv"},
	{"POST", "/api/v1/domains", "application/json"},
	{"GET", "/api/v1/suppressions?stream=%s&limit=3", ""},
	{"GET", "/api/v1/suppressions?after=%s", ""},
	{"GET", "/api/v1/suppressions/marketing/%s", ""},
	{"DELETE", "/api/v1/suppressions/%s/a@b.test", ""},
	{"GET", "/api/v1/domains/%s", ""},
	{"DELETE", "/api/v1/domains/%s", ""},
}

// FuzzHTTP sends arbitrary bodies and path/query values to the policy
// API over a real engine (suppression store, domain registry, DKIM
// keygen): no panic and no 5xx; every error answer is the
// {"error":{"code","message"}} shape; a suppression the API created (201)
// is then found by GET and listed under its stream.
func FuzzHTTP(f *testing.F) {
	cfg := config.Default()
	cfg.DataDir = f.TempDir()
	cfg.DNS.Resolver = "127.0.0.1:1" // refused at once: domain checks fail fast
	e, err := New(Options{Config: cfg, Registry: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	h := e.Handler()
	for _, s := range []struct {
		route byte
		body  string
		param string
	}{
		{0, `{"address":"a@b.test","stream":"marketing","reason":"manual"}`, ""},
		{0, `{"address":"Bob@Example.TEST","reason":"complaint","source":"x"}`, ""},
		{0, `{"address":"a@b.test","stream":"*","extra":1}`, ""},
		{0, `{"address":"","stream":"bad stream"}`, ""},
		{0, `{"address":"a@b.test"} trailing`, ""},
		{1, "address,stream,reason,source,time\nc@d.test,marketing,hard_bounce,x,2026-01-01T00:00:00Z\n", "csv"},
		{1, "e@f.test\n\"g@h.test\",transactional\n", ""},
		{1, "a@b.test,marketing,nosuchreason\n", "x"},
		{2, `{"domain":"shop.test","algorithm":"ed25519"}`, ""},
		{2, `{"domain":"Shop.Test.","algorithm":"nosuch"}`, ""},
		{2, `{"domain":"-bad-.test"}`, ""},
		{3, "", "marketing"},
		{4, "", "AAAA"},
		{5, "", "a@b.test"},
		{6, "", "*"},
		{7, "", "shop.test"},
		{8, "", "nosuch.test"},
	} {
		f.Add(s.route, []byte(s.body), s.param)
	}
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if rt.path == "/api/v1/domains" && !bytes.Contains(bytes.ToLower(body), []byte("ed25519")) {
			// RSA-2048 keygen takes ~100 ms per new domain: keep the
			// fuzzer's throughput on the decoding, ed25519 keys only.
			body = bytes.Replace(body, []byte(`"domain"`), []byte(`"algorithm":"ed25519","domain"`), 1)
		}
		target := strings.Replace(rt.path, "%s", url.PathEscape(param), 1)
		if strings.Contains(rt.path, "?") {
			target = strings.Replace(rt.path, "%s", url.QueryEscape(param), 1)
		}
		code, resp := serve(t, h, rt.method, target, rt.ctype, body)
		if code == 0 {
			return // the fuzzed value makes no valid request line
		}
		if code >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, target, body, code, resp)
		}
		if code >= 400 && code != http.StatusNotFound && code != http.StatusMethodNotAllowed || code == http.StatusNotFound && bytes.HasPrefix(resp, []byte("{")) {
			checkErrorBody(t, rt.method+" "+target, code, resp)
		}
		if rt.path == "/api/v1/suppressions" && code == http.StatusCreated {
			var ent suppress.Entry
			if err := json.Unmarshal(resp, &ent); err != nil {
				t.Fatalf("201 body %s: %v", resp, err)
			}
			get := "/api/v1/suppressions/" + url.PathEscape(ent.Stream) + "/" + url.PathEscape(ent.Address)
			if c, r := serve(t, h, "GET", get, "", nil); c != http.StatusOK {
				t.Fatalf("created %+v from %q, then GET %s: %d %s", ent, body, get, c, r)
			}
		}
	})
}

// serve runs one request through h; code 0 when target is not a valid
// request URI.
func serve(t *testing.T, h http.Handler, method, target, ctype string, body []byte) (int, []byte) {
	t.Helper()
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

// checkErrorBody fails t unless body is {"error":{"code","message"}} with
// both set.
func checkErrorBody(t *testing.T, what string, code int, body []byte) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: %d with body %q, want {\"error\":{\"code\",\"message\"}}", what, code, body)
	}
}
