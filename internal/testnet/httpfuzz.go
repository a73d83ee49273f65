package testnet

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRoute is one route of a fuzzed HTTP handler: the method, the path
// with {p} standing for the fuzzed parameter (path-escaped, or as is
// after "?" where it is the query), the Content-Type, and seed bodies.
type FuzzRoute struct {
	Method, Path, ContentType string
	Seeds                     []string
}

// AddFuzzSeeds adds every route's seeds to f as (route index, body,
// parameter), the parameters taken in turn from params.
func AddFuzzSeeds(f *testing.F, routes []FuzzRoute, params []string) {
	n := 0
	for i, r := range routes {
		for _, b := range r.Seeds {
			f.Add(byte(i), []byte(b), params[n%len(params)])
			n++
		}
	}
}

// FuzzRequest serves the request (route, body, param) to h, the route
// chosen by route modulo len(routes), and fails t on a 5xx, on an API
// (/api/...) error that is not {"error":{"code","message"}}, and on an
// API 2xx answer with a body that is not JSON (a ?format=csv answer
// aside). The mux's own plain-text 404 and 405, redirects and 204 pass.
// It returns the answer's status (0: no request) and body for a caller's
// own checks.
func FuzzRequest(t testing.TB, h http.Handler, routes []FuzzRoute, route byte, body []byte, param string) (int, []byte) {
	t.Helper()
	r := routes[int(route)%len(routes)]
	target := r.Path
	if strings.Contains(target, "?{p}") {
		target = strings.Replace(target, "{p}", param, 1)
	} else {
		target = strings.Replace(target, "{p}", url.PathEscape(param), 1)
	}
	code, resp := FuzzServe(h, r.Method, target, r.ContentType, body)
	what := r.Method + " " + target + " " + string(body)
	api := strings.HasPrefix(r.Path, "/api/")
	switch {
	case code == 0:
		return 0, nil // not a request net/http can form
	case code >= 500:
		t.Fatalf("%s: %d %s", what, code, resp)
	case code >= 400 && api:
		if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && !bytes.HasPrefix(resp, []byte("{")) {
			return code, resp // the mux's own answer for a path or method no route matches
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(resp, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s: %d %q, want {\"error\":{\"code\",\"message\"}}", what, code, resp)
		}
	case code < 300 && code != http.StatusNoContent && api && !strings.Contains(target, "format=csv"):
		if !json.Valid(resp) {
			t.Fatalf("%s: %d with a body that is not JSON: %q", what, code, resp)
		}
	}
	return code, resp
}

// FuzzServe serves one request to h through httptest and returns the
// status and body; 0 when the target is not a request net/http can form.
func FuzzServe(h http.Handler, method, target, ctype string, body []byte) (int, []byte) {
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

// Route is a FuzzRoute with its seed bodies.
func Route(method, path, ctype string, seeds ...string) FuzzRoute {
	return FuzzRoute{Method: method, Path: path, ContentType: ctype, Seeds: seeds}
}
