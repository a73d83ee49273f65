package account

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// FuzzHTTP sends arbitrary bodies, path parameters and query strings to
// every route of the account API (as an owner's session, the principal
// admin's auth would have put in the context) and to the login handler
// (JSON and form), over a real SQLite database with one owner and one
// marketer: no panic and no 5xx; an error is {"error":{"code","message"}};
// a 2xx answer is JSON.
func FuzzHTTP(f *testing.F) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.TempDir(), "esp.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	s, err := Open(ctx, db, false, Options{})
	if err != nil {
		f.Fatal(err)
	}
	owner, err := s.AddUser(ctx, "owner@shop.test", "Owner", "correct horse battery", Owner)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.AddUser(ctx, "m@shop.test", "M", "another long password", Marketer); err != nil {
		f.Fatal(err)
	}
	sid, _, err := s.Login(ctx, "owner@shop.test", "correct horse battery", "192.0.2.1")
	if err != nil {
		f.Fatal(err)
	}
	api, login := s.Handler(), s.LoginHandler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/login" {
			login.ServeHTTP(w, r)
			return
		}
		p := Principal{Role: Owner, User: &owner, SessionID: sid}
		api.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
	routes := []testnet.FuzzRoute{
		testnet.Route("GET", "/api/v1/session?{p}", "", ""),
		testnet.Route("GET", "/api/v1/users?{p}", "", ""),
		testnet.Route("POST", "/api/v1/users", "application/json", `{"email":"v@shop.test","name":"V","password":"a long enough password","role":"viewer"}`, `{"email":"owner@shop.test","password":"a long enough password","role":"owner"}`, `{"email":"x","password":"","role":"god"}`, `{"email":1}`),
		testnet.Route("PATCH", "/api/v1/users/{p}", "application/json", `{"role":"viewer"}`, `{"password":"short"}`, `{"role":"emperor"}`, `{}`, `[`),
		testnet.Route("DELETE", "/api/v1/users/{p}", "", ""),
		testnet.Route("GET", "/api/v1/keys?{p}", "", ""),
		testnet.Route("POST", "/api/v1/keys", "application/json", `{"name":"ci","role":"marketer","stream":"news","domains":["shop.test"]}`, `{"name":"","role":"owner"}`, `{"name":"k","role":"marketer","domains":"shop.test"}`),
		testnet.Route("DELETE", "/api/v1/keys/{p}", "", ""),
		testnet.Route("DELETE", "/api/v1/session", "", ""),
		testnet.Route("POST", "/api/v1/login", "application/json", `{"email":"m@shop.test","password":"another long password"}`, `{"email":"m@shop.test","password":"wrong"}`, `{"email":""}`, `{"email":`),
		testnet.Route("POST", "/api/v1/login", "application/x-www-form-urlencoded", "email=m%40shop.test&password=another+long+password", "email=&password=", "%zz"),
	}
	params := []string{"1", "2", "0", "-1", "abc", "99999999999999999999", "limit=1"}
	testnet.AddFuzzSeeds(f, routes, params)
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		testnet.FuzzRequest(t, h, routes, route, body, param)
	})
}
