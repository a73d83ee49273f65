package audience

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

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
		if code, resp := testnet.FuzzServe(h, r.method, r.path, "application/json", []byte(r.body)); code >= 300 {
			f.Fatalf("%s %s: %d %s", r.method, r.path, code, resp)
		}
	}
	routes := []testnet.FuzzRoute{
		testnet.Route("GET", "/api/v1/audiences?{p}", "", ""),
		testnet.Route("POST", "/api/v1/audiences", "application/json", `{"name":"b","double_opt_in":true}`, `{"name":`, `{"nme":"x"}`, `{"name":"c","fields":[{"name":"","type":"blob"}]}`),
		testnet.Route("GET", "/api/v1/audiences/{p}", "", ""),
		testnet.Route("DELETE", "/api/v1/audiences/{p}", "", ""),
		testnet.Route("POST", "/api/v1/audiences/{p}/fields", "application/json", `{"fields":[{"name":"zip","type":"text"}]}`, `{"fields":[{"name":"email","type":"number"}]}`, `{"fields":null}`),
		testnet.Route("GET", "/api/v1/audiences/{p}/contacts", "", ""),
		testnet.Route("POST", "/api/v1/audiences/{p}/contacts", "application/json", `{"email":"b@x.test","age":30,"fields":{"city":"Rome"}}`, `{"email":"not an address"}`, `{"email":"c@x.test","fields":{"nosuch":1}}`, `{"email":"d@x.test","birthday":"31-02-2000"}`),
		testnet.Route("PUT", "/api/v1/audiences/{p}/contacts", "application/json", `{"contacts":[{"email":"e@x.test"},{"email":"bad"}],"on_duplicate":"update","tags":"add"}`, `{"contacts":[],"on_duplicate":"explode"}`, `{"contacts":{}}`),
		testnet.Route("GET", "/api/v1/audiences/1/contacts/{p}", "", ""),
		testnet.Route("PATCH", "/api/v1/audiences/1/contacts/{p}", "application/json", `{"name":"B","status":"unsubscribed"}`, `{"status":"nosuch"}`, `{"email":1}`),
		testnet.Route("DELETE", "/api/v1/audiences/1/contacts/{p}", "", ""),
		testnet.Route("POST", "/api/v1/audiences/{p}/tags", "application/json", `{"contact_ids":[1],"add":["vip"],"remove":["old"]}`, `{"contact_ids":[-1,0],"add":[""]}`, `{"add":"vip"}`),
		testnet.Route("GET", "/api/v1/audiences/{p}/segments", "", ""),
		testnet.Route("POST", "/api/v1/audiences/{p}/segments", "application/json", `{"name":"young","expression":"age < 30"}`, `{"name":"x","expression":"age <"}`, `{"name":"","expression":""}`),
		testnet.Route("POST", "/api/v1/audiences/{p}/segments/count", "application/json", `{"expression":"\"vip\" in tags || city == \"Oslo\""}`, `{"expression":"((("}`, `{"expression":1}`),
		testnet.Route("POST", "/api/v1/audiences/{p}/segments/preview", "application/json", `{"expression":"age > 1","limit":5}`, `{"expression":"age > 1","limit":-1}`, `{"expression":"nosuch == 1"}`),
		testnet.Route("GET", "/api/v1/audiences/1/segments/{p}", "", ""),
		testnet.Route("DELETE", "/api/v1/audiences/1/segments/{p}", "", ""),
		testnet.Route("GET", "/api/v1/audiences/1/segments/{p}/count", "", ""),
		testnet.Route("GET", "/api/v1/audiences/1/segments/1/preview?{p}", "", ""),
		testnet.Route("POST", "/api/v1/audiences/1/imports?{p}", "text/csv", "email,city\nf@x.test,Oslo\n", "email\n\"unterminated\n", ""),
		testnet.Route("GET", "/api/v1/imports/{p}", "", ""),
		testnet.Route("GET", "/api/v1/imports/1/errors?{p}", "", ""),
		testnet.Route("GET", "/api/v1/audiences/1/contacts/{p}/consent", "", ""),
		testnet.Route("POST", "/api/v1/audiences/1/contacts/{p}/consent", "application/json", `{"purpose":"newsletter","action":"grant","source":"form","ip":"192.0.2.1","text_version":"v1"}`, `{"purpose":"","action":"maybe"}`, `{"ip":"not an ip","action":"grant","purpose":"x"}`, `{"at":"yesterday"}`),
		testnet.Route("GET", "/api/v1/audiences/1/contacts/{p}/export", "", ""),
		testnet.Route("POST", "/api/v1/audiences/1/contacts/{p}/erase", "", ""),
		testnet.Route("GET", "/api/v1/audiences/{p}/opt-in", "", ""),
		testnet.Route("PUT", "/api/v1/audiences/{p}/opt-in", "application/json", `{"subject":"Confirm","text":"Click {{confirm_url}}"}`, `{"subject":1}`, `[`),
		testnet.Route("GET", "/api/v1/audiences/1/jobs/{p}", "", ""),
		testnet.Route("GET", "/api/v1/audiences/1/jobs/1/errors?{p}", "", ""),
		testnet.Route("POST", "/api/v1/audiences/{p}/cleanings", "application/json", `{"segment":1,"older_than":"720h"}`, `{"older_than":"soon"}`, `{}`),
		testnet.Route("GET", "/api/v1/audiences/1/cleanings/{p}", "", ""),
		testnet.Route("GET", "/api/v1/audiences/1/contacts/{p}/verification", "", ""),
	}
	params := []string{"1", "0", "-1", "99999999999999999999", "abc", "after=1&limit=2", "limit=-5&format=csv"}
	testnet.AddFuzzSeeds(f, routes, params)
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		testnet.FuzzRequest(t, h, routes, route, body, param)
	})
}
