package campaign

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/testnet"
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
		if code, resp := testnet.FuzzServe(h, "POST", r.path, "application/json", []byte(r.body)); code >= 300 {
			f.Fatalf("POST %s: %d %s", r.path, code, resp)
		}
	}
	routes := []testnet.FuzzRoute{
		testnet.Route("POST", "/api/v1/templates", "application/json", `{"call_name":"t2","name":"T","type":"transactional","subject":"Code %code%","text":"%code% %email%","variables":["code"]}`, `{"call_name":"","html":""}`, `{"call_name":"x","text":"%unclosed"}`, `{"version":"one"}`),
		testnet.Route("GET", "/api/v1/templates?{p}", "", ""),
		testnet.Route("GET", "/api/v1/templates/{p}", "", ""),
		testnet.Route("GET", "/api/v1/templates/{p}/versions", "", ""),
		testnet.Route("POST", "/api/v1/templates/{p}/preview", "application/json", `{"variables":{"name":"Ann"},"version":1}`, `{"version":-3}`, `{"variables":[1]}`, ``),
		testnet.Route("GET", "/api/v1/campaigns?{p}", "", ""),
		testnet.Route("POST", "/api/v1/campaigns", "application/json", `{"id":"c2","audience":1,"template":"welcome","from":"news@shop.test","postal_address":"Shop Ltd, 1 Harbour Road","page_size":5,"rate":2.5}`, `{"id":"c3","audience":99,"from":"x"}`, `{"id":"","audience":1,"segment":"age <","from":"a@b.test"}`, `{"rate":"fast"}`),
		testnet.Route("GET", "/api/v1/campaigns/{p}", "", ""),
		testnet.Route("POST", "/api/v1/campaigns/{p}/send", "", ""),
		testnet.Route("POST", "/api/v1/campaigns/{p}/pause", "", ""),
		testnet.Route("POST", "/api/v1/campaigns/{p}/resume", "", ""),
		testnet.Route("POST", "/api/v1/campaigns/{p}/cancel", "", ""),
		testnet.Route("POST", "/api/v1/campaigns/{p}/schedule", "application/json", `{"send_at":"2030-01-02T09:00:00","time_zone":"Asia/Taipei"}`, `{"send_at":"tomorrow"}`, `{"send_at":"2030-01-02T09:00:00","time_zone":"Mars/Olympus"}`, `{"send_at":"2030-01-02T09:00:00","contact_time_zone":true}`),
		testnet.Route("POST", "/api/v1/campaigns/{p}/test", "application/json", `{"to":["qa@shop.test"]}`, `{"to":[]}`, `{"to":["not an address"]}`, `{"to":"qa@shop.test"}`),
		testnet.Route("POST", "/api/v1/campaigns/{p}/check", "", ""),
	}
	params := []string{"c1", "welcome", "nosuch", "", "status=draft&limit=2", "limit=0", "after=%zz"}
	testnet.AddFuzzSeeds(f, routes, params)
	f.Fuzz(func(t *testing.T, route byte, body []byte, param string) {
		testnet.FuzzRequest(t, h, routes, route, body, param)
	})
}
