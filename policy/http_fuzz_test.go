package policy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/suppress"
)

// fuzzRoutes are the policy API requests FuzzHTTP drives: the JSON and
// CSV bodies of the suppression and domain endpoints, and path and query
// values of the rest ({p} is the fuzzed string, escaped).
var fuzzRoutes = []testnet.FuzzRoute{
	testnet.Route("POST", "/api/v1/suppressions", "application/json"),
	testnet.Route("POST", "/api/v1/suppressions/import?source={p}", "text/csv"),
	testnet.Route("POST", "/api/v1/domains", "application/json"),
	testnet.Route("GET", "/api/v1/suppressions?stream={p}&limit=3", ""),
	testnet.Route("GET", "/api/v1/suppressions?after={p}", ""),
	testnet.Route("GET", "/api/v1/suppressions/marketing/{p}", ""),
	testnet.Route("DELETE", "/api/v1/suppressions/{p}/a@b.test", ""),
	testnet.Route("GET", "/api/v1/domains/{p}", ""),
	testnet.Route("DELETE", "/api/v1/domains/{p}", ""),
}

// FuzzHTTP sends arbitrary bodies and path/query values to the policy
// API over a real engine (suppression store, domain registry, DKIM
// keygen): testnet.FuzzRequest's checks (no panic, no 5xx, every error
// answer the {"error":{"code","message"}} shape, JSON answers), and a
// suppression the API created (201) is then found by GET.
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
		if rt.Path == "/api/v1/domains" && !bytes.Contains(bytes.ToLower(body), []byte("ed25519")) {
			// RSA-2048 keygen takes ~100 ms per new domain: keep the
			// fuzzer's throughput on the decoding, ed25519 keys only.
			body = bytes.Replace(body, []byte(`"domain"`), []byte(`"algorithm":"ed25519","domain"`), 1)
		}
		code, resp := testnet.FuzzRequest(t, h, fuzzRoutes, route, body, param)
		if rt.Path != "/api/v1/suppressions" || code != http.StatusCreated {
			return
		}
		var ent suppress.Entry
		if err := json.Unmarshal(resp, &ent); err != nil {
			t.Fatalf("%d body %s: %v", code, resp, err)
		}
		get := "/api/v1/suppressions/" + url.PathEscape(ent.Stream) + "/" + url.PathEscape(ent.Address)
		if c, r := testnet.FuzzServe(h, "GET", get, "", nil); c != http.StatusOK {
			t.Fatalf("created %+v from %q, then GET %s: %d %s", ent, body, get, c, r)
		}
	})
}
