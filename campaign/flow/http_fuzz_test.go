package flow

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// FuzzHTTP sends arbitrary JSON and TOML bodies, path parameters and
// query strings to every route of the flow API and to the custom event
// route over a real SQLite store holding the example flows, their
// templates and a real queue: no panic and no 5xx; an error is
// {"error":{"code","message"}}; a 2xx answer is JSON.
func FuzzHTTP(f *testing.F) {
	fx := newFixtureTB(f, filepath.Join(f.TempDir(), "esp.db"), Options{})
	h := fx.svc.Handler()
	welcome, err := os.ReadFile(filepath.Join("..", "..", "examples", "flows", "welcome.toml"))
	if err != nil {
		f.Fatal(err)
	}
	valid := `{"id":"j1","audience_name":"newsletter","from":"a@shop.example","trigger":{"type":"joined"},"steps":[{"id":"s","type":"send","template":"welcome-2"}]}`
	routes := []testnet.FuzzRoute{
		testnet.Route("GET", "/api/v1/flows?{p}", "", ""),
		testnet.Route("POST", "/api/v1/flows", "application/json", valid, `{"id":`, `{"id":"x","bogus":1}`, `{"id":"x","audience_name":"newsletter","from":"a@b.example","trigger":{"type":"joined"},"steps":[{"id":"a","type":"send","template":"nope"}]}`,
			`{"id":"x","trigger":{"type":"event","event":"e"},"steps":[{"id":"a","type":"wait","event":"b","timeout":"1d","on_event":"a"}]}`),
		testnet.Route("POST", "/api/v1/flows", "application/toml", string(welcome), "id = \"l\"\n[trigger]\ntype = \"joined\"\n[[steps]]\nid = \"a\"\ntype = \"condition\"\nif = { has_tag = \"x\" }\nthen = \"a\"\n", "id = ", "bogus = 1\n"),
		testnet.Route("PUT", "/api/v1/flows/{p}", "application/json", valid, `{"id":"other"}`, `[]`),
		testnet.Route("PUT", "/api/v1/flows/{p}", "application/toml", string(welcome), "[[steps]]\nid = 1\n"),
		testnet.Route("GET", "/api/v1/flows/{p}", "", ""),
		testnet.Route("DELETE", "/api/v1/flows/{p}", "", ""),
		testnet.Route("GET", "/api/v1/flows/{p}/versions", "", ""),
		testnet.Route("GET", "/api/v1/flows/{p}/stats", "", ""),
		testnet.Route("GET", "/api/v1/flows/journey?{p}", "", ""),
		testnet.Route("POST", "/api/v1/events/custom", "application/json", `{"contact":"ada@example.test","name":"cart_abandoned","properties":{"cart_url":"u"},"audience":"newsletter","create":true}`,
			`{"contact":"nobody@example.test","name":"x"}`, `{"contact":"not an address","name":"x"}`, `{"contact":"a@example.test","name":"bad name!"}`, `{"properties":[1]}`),
	}
	params := []string{"welcome", "j1", "abandoned-cart", "nosuch", "email=ada@example.test", "email=", "%"}
	testnet.AddFuzzSeeds(f, routes, params)
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		testnet.FuzzRequest(t, h, routes, route, body, param)
	})
}
