package tracking

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/policy/unsub"
)

// FuzzHTTP sends arbitrary bodies, path parameters and query strings to
// the tracking domains API (CNAMEs looked up through a real loopback DNS
// server) and arbitrary forms and tokens to the preference centre and
// one-click unsubscribe over a real SQLite store and suppression list: no
// panic and no 5xx; an API error is {"error":{"code","message"}}; an API
// 2xx answer is JSON.
func FuzzHTTP(f *testing.F) {
	ctx := context.Background()
	dir := f.TempDir()
	srv, err := testnet.StartDNS()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	srv.Add("click.shop.test. 60 IN CNAME track.petrel.test.")
	srv.Add("wrong.shop.test. 60 IN CNAME elsewhere.example.")
	res, err := dns.NewResolver(srv.Addr, 2*time.Second, nil)
	if err != nil {
		f.Fatal(err)
	}
	st, err := audience.Open(ctx, filepath.Join(dir, "esp.db"), audience.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	doms, err := NewDomains(ctx, st.DB(), st.Postgres(), res, "track.petrel.test.")
	if err != nil {
		f.Fatal(err)
	}
	supp, err := suppress.Open(filepath.Join(dir, "suppression"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { supp.Close() })
	tokens, err := unsub.New(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		f.Fatal(err)
	}
	p := &Preferences{Parse: tokens.Parse, Store: st, Suppress: func(stream, rcpt, via string) error {
		_, err := supp.Add(suppress.Entry{Address: rcpt, Stream: stream, Reason: suppress.ReasonUnsubscribe, Source: "list-unsubscribe:" + via})
		return err
	}}
	for _, n := range []string{"news", "offers"} {
		a, err := st.CreateAudience(ctx, audience.Audience{Name: n})
		if err != nil {
			f.Fatal(err)
		}
		if _, _, err := st.UpsertContact(ctx, a.ID, audience.ContactInput{Email: "ann@example.test"}); err != nil {
			f.Fatal(err)
		}
	}
	dh, ph := doms.Handler(), p.Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			dh.ServeHTTP(w, r)
			return
		}
		ph.ServeHTTP(w, r)
	})
	tok := tokens.Make("marketing", "ann@example.test")
	routes := []testnet.FuzzRoute{
		testnet.Route("GET", "/api/v1/tracking/domains?{p}", "", ""),
		testnet.Route("POST", "/api/v1/tracking/domains", "application/json", `{"host":"click.shop.test","sending_domain":"shop.test","https":true}`, `{"host":"wrong.shop.test","sending_domain":"shop.test","target":"x.example"}`, `{"host":"","sending_domain":""}`, `{"host":"a b","status":"verified"}`, `{"https":"yes"}`),
		testnet.Route("GET", "/api/v1/tracking/domains/{p}", "", ""),
		testnet.Route("POST", "/api/v1/tracking/domains/{p}/check", "", ""),
		testnet.Route("DELETE", "/api/v1/tracking/domains/{p}", "", ""),
		testnet.Route("GET", "/unsubscribe/{p}", "", ""),
		testnet.Route("GET", "/preferences/{p}", "", ""),
		testnet.Route("POST", "/unsubscribe/{p}", "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", "", "%zz"),
		testnet.Route("POST", "/preferences/{p}", "application/x-www-form-urlencoded", "keep=1", "action=all", "keep=x&keep=99999999999999999999", "%"),
	}
	params := []string{tok, "click.shop.test", "wrong.shop.test", "nosuch.test", "", "not-a-token", tok + "x"}
	testnet.AddFuzzSeeds(f, routes, params)
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		testnet.FuzzRequest(t, h, routes, route, body, param)
	})
}
