package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/domains"
	"github.com/petrel-mta/petrel/policy/suppress"
)

type fixture struct {
	e   *Engine
	dns *testnet.DNS
	api *httptest.Server
	pub *httptest.Server
}

func newFixture(t *testing.T, mutate func(*config.Config)) *fixture {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Hostname = "mx.petrel.test"
	cfg.DNS.Resolver = d.Addr
	cfg.Sending.SPFIPs = []string{"192.0.2.25"}
	cfg.Sending.UnsubscribeURL = "https://mail.petrel.test"
	cfg.Bounce.Domain = "bounce.petrel.test"
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Config: cfg, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	f := &fixture{e: e, dns: d, api: httptest.NewServer(e.Handler()), pub: httptest.NewServer(e.PublicHandler())}
	t.Cleanup(f.api.Close)
	t.Cleanup(f.pub.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, ctype string, body io.Reader, wantStatus int, out any) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, f.api.URL+path, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return data
}

func TestSuppressionAPI(t *testing.T) {
	f := newFixture(t, nil)
	for _, a := range []string{`{"address":"A@Example.com","stream":"marketing","reason":"complaint"}`, `{"address":"b@example.com"}`} {
		f.do(t, "POST", "/api/v1/suppressions", "application/json", strings.NewReader(a), 201, nil)
	}
	for _, bad := range []string{`{"address":"nope"}`, `{"address":"a@b.c","reason":"whim"}`, `{"address":"a@b.c","extra":1}`, `not json`} {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		f.do(t, "POST", "/api/v1/suppressions", "application/json", strings.NewReader(bad), 400, &e)
		if e.Error.Code != "invalid_request" {
			t.Errorf("%s: error code %q", bad, e.Error.Code)
		}
	}
	var changes []string
	f.e.store.OnChange = func(e suppress.Entry, removed bool) {
		changes = append(changes, fmt.Sprintf("%s %s %s %v", e.Stream, e.Address, e.Reason, removed))
	}
	if err := f.e.Suppress("*", "Bounced@Example.net", suppress.ReasonHardBounce, "bounce:m1"); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Suppress("*", "broken", suppress.ReasonHardBounce, "bounce:m2"); err == nil {
		t.Fatal("Suppress accepted a non-address")
	}
	if len(changes) != 1 || changes[0] != "* Bounced@example.net hard_bounce false" {
		t.Fatalf("OnChange calls: %q", changes)
	}
	checks := []struct {
		stream, addr, reason string
		ok                   bool
	}{
		{"marketing", "bounced@example.net", "hard_bounce", true},
		{"marketing", "a@example.com", "complaint", true},
		{"transactional", "a@example.com", "", false},
		{"transactional", "B@EXAMPLE.COM", "manual", true},
	}
	for _, c := range checks {
		if r, ok := f.e.Suppressed(c.stream, c.addr); ok != c.ok || r != c.reason {
			t.Errorf("Suppressed(%s,%s) = %q %v", c.stream, c.addr, r, ok)
		}
	}
	var page struct {
		Entries []struct{ Address, Stream, Reason string }
		Next    string
	}
	seen, pages, next := map[string]bool{}, 0, ""
	for {
		page.Entries, page.Next = nil, ""
		f.do(t, "GET", "/api/v1/suppressions?limit=2&after="+next, "", nil, 200, &page)
		pages++
		for _, en := range page.Entries {
			seen[en.Stream+"/"+en.Address] = true
		}
		if next = page.Next; next == "" {
			break
		}
	}
	if len(seen) != 3 || pages != 2 {
		t.Fatalf("paged %d entries in %d pages: %v", len(seen), pages, seen)
	}
	f.do(t, "GET", "/api/v1/suppressions?limit=0", "", nil, 400, nil)
	f.do(t, "GET", "/api/v1/suppressions/marketing/a@example.com", "", nil, 200, nil)
	f.do(t, "DELETE", "/api/v1/suppressions/marketing/A@example.com", "", nil, 200, nil)
	f.do(t, "DELETE", "/api/v1/suppressions/marketing/a@example.com", "", nil, 404, nil)
	if _, ok := f.e.Suppressed("marketing", "a@example.com"); ok {
		t.Fatal("still suppressed after DELETE")
	}

	var imp struct{ Imported int }
	f.do(t, "POST", "/api/v1/suppressions/import?source=crm", "text/csv", strings.NewReader("c@example.com,marketing,unsubscribe\nd@example.com\n"), 200, &imp)
	if imp.Imported != 2 {
		t.Fatalf("imported %d", imp.Imported)
	}
	f.do(t, "POST", "/api/v1/suppressions/import", "text/csv", strings.NewReader("e@example.com\nbroken\n"), 400, &imp)
	if imp.Imported != 1 {
		t.Fatalf("partial import reported %d", imp.Imported)
	}
	csv := string(f.do(t, "GET", "/api/v1/suppressions/export", "", nil, 200, nil))
	for _, want := range []string{"address,stream,reason,source,time", "b@example.com,*,manual,api,", "c@example.com,marketing,unsubscribe,crm,", "d@example.com,*,manual,crm,", "e@example.com,*,manual,import,"} {
		if !strings.Contains(csv, want) {
			t.Errorf("export lacks %q:\n%s", want, csv)
		}
	}
	if n := strings.Count(csv, "\n"); n != 6 {
		t.Errorf("export has %d lines:\n%s", n, csv)
	}
}

// TestSuppressionImportSkipping: with on_error=skip an import goes past
// invalid rows (bad address, stream, reason, time, too many fields, a CSV
// quote error) and reports each with its line, importing the rest; an
// unknown on_error is 400.
func TestSuppressionImportSkipping(t *testing.T) {
	f := newFixture(t, nil)
	in := "address,stream,reason\n" +
		"ok1@example.com,marketing,unsubscribe\n" + // line 2
		"not-an-address\n" + // 3
		"ok2@example.com\n" + // 4
		"bad@example.com,no such stream!,manual\n" + // 5
		"bad2@example.com,*,no_such_reason\n" + // 6
		"bad3@example.com,*,manual,src,yesterday\n" + // 7
		"bad4@example.com,*,manual,src,2026-01-01T00:00:00Z,extra\n" + // 8
		"ok3@example.com,*,complaint\n" + // 9
		"\"bad5@example.com\"x,*\n" + // 10: quote error
		"ok4@example.com\n" // 11
	var rep struct {
		Imported, Skipped int
		Errors            []struct {
			Line    int
			Message string
		}
	}
	f.do(t, "POST", "/api/v1/suppressions/import?on_error=skip&source=crm", "text/csv", strings.NewReader(in), 200, &rep)
	var lines []int
	for _, e := range rep.Errors {
		if e.Message == "" {
			t.Errorf("row error without a message: %+v", e)
		}
		lines = append(lines, e.Line)
	}
	if rep.Imported != 4 || rep.Skipped != 6 || !slices.Equal(lines, []int{3, 5, 6, 7, 8, 10}) {
		t.Fatalf("report %+v, lines %v", rep, lines)
	}
	for _, a := range []string{"ok1@example.com", "ok2@example.com", "ok3@example.com", "ok4@example.com"} {
		if _, ok := f.e.Suppressed("marketing", a); !ok {
			t.Errorf("%s not imported", a)
		}
	}
	for _, a := range []string{"bad@example.com", "bad2@example.com", "bad3@example.com", "bad4@example.com"} {
		if _, ok := f.e.Suppressed("marketing", a); ok {
			t.Errorf("%s imported from an invalid row", a)
		}
	}
	f.do(t, "POST", "/api/v1/suppressions/import?on_error=maybe", "text/csv", strings.NewReader("a@example.com\n"), 400, nil)
}

// publish adds the records a domain's info says to publish.
func publish(d *testnet.DNS, info DomainInfo, kinds ...string) {
	for _, r := range info.Records {
		for _, k := range kinds {
			if r.Kind == k && r.Zone != "" {
				d.Add(r.Zone)
			}
		}
	}
}

func TestCheckSender(t *testing.T) {
	type dom struct {
		name  string
		kinds []string // records published; nil = not registered
	}
	doms := []dom{
		{"unreg.test", nil},
		{"bare.test", []string{}},
		{"nodkim.test", []string{domains.KindSPF, domains.KindMX, domains.KindDMARC}},
		{"usable.test", []string{domains.KindSPF, domains.KindDKIM, domains.KindMX}},
		{"verified.test", []string{domains.KindSPF, domains.KindDKIM, domains.KindMX, domains.KindDMARC}},
	}
	tests := []struct {
		require, from string
		errHas        string // "" means accepted
	}{
		{"none", "unreg.test", ""},
		{"none", "bare.test", ""},
		{"usable", "unreg.test", "sender domain unreg.test is not a registered sending domain"},
		{"usable", "bare.test", "sender domain bare.test is unverified: SPF record bare.test missing"},
		{"usable", "nodkim.test", "sender domain nodkim.test is unverified: DKIM record s1._domainkey.nodkim.test missing"},
		{"usable", "usable.test", ""},
		{"usable", "news.usable.test", ""},
		{"usable", "verified.test", ""},
		{"verified", "usable.test", "sender domain usable.test is usable: DMARC record _dmarc.usable.test missing"},
		{"verified", "verified.test", ""},
	}
	fixtures := map[string]*fixture{}
	for _, req := range []string{"none", "usable", "verified"} {
		f := newFixture(t, func(c *config.Config) { c.RequireDomainStatus = req })
		for _, d := range doms {
			if d.kinds == nil {
				continue
			}
			info, err := f.e.AddDomain(context.Background(), d.name, "ed25519", false)
			if err != nil {
				t.Fatal(err)
			}
			if info.Status != domains.Unverified {
				t.Fatalf("%s before publishing: %s", d.name, info.Status)
			}
			publish(f.dns, info, d.kinds...)
		}
		// Before the re-check the cache still says unverified: no DNS
		// lookup per message.
		if req != "none" {
			if err := f.e.CheckSender(context.Background(), "verified.test"); err == nil {
				t.Fatalf("%s: accepted before the cache was refreshed", req)
			}
		}
		f.e.RefreshDomains(context.Background())
		fixtures[req] = f
	}
	for _, tc := range tests {
		f := fixtures[tc.require]
		before := f.dns.Queries("_dmarc.verified.test", "TXT") + f.dns.Queries("verified.test", "TXT")
		err := f.e.CheckSender(context.Background(), tc.from)
		if tc.errHas == "" && err != nil {
			t.Errorf("require %s, from %s: %v", tc.require, tc.from, err)
		}
		if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("require %s, from %s: %v, want %q", tc.require, tc.from, err, tc.errHas)
		}
		if after := f.dns.Queries("_dmarc.verified.test", "TXT") + f.dns.Queries("verified.test", "TXT"); after != before {
			t.Errorf("CheckSender made DNS queries")
		}
	}
	var info DomainInfo
	fixtures["usable"].do(t, "GET", "/api/v1/domains/verified.test", "", nil, 200, &info)
	if info.Status != domains.Verified || info.Last == nil || len(info.Last.Checks) != 4 {
		t.Fatalf("GET domain: %+v", info)
	}
	fixtures["usable"].do(t, "GET", "/api/v1/domains/unreg.test", "", nil, 404, nil)
	var list struct{ Domains []DomainInfo }
	fixtures["usable"].do(t, "GET", "/api/v1/domains", "", nil, 200, &list)
	if len(list.Domains) != 4 {
		t.Fatalf("%d domains listed", len(list.Domains))
	}
}

// lookupTXT asks the test DNS server through delivery's resolver, the
// way a receiver would.
func lookupTXT(t testing.TB, addr string) func(string) ([]string, error) {
	r, err := dns.NewResolver(addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(name string) ([]string, error) { return r.LookupTXT(context.Background(), name) }
}

const msg = "From: News <news@shop.test>\r\nTo: Carol@Example.org\r\nSubject: Sale\r\n" +
	"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <m1@shop.test>\r\n\r\nBuy now.\r\n"

func TestPrepareAndOneClick(t *testing.T) {
	f := newFixture(t, nil)
	// Through the HTTP API, as petrelctl domain add does.
	var info DomainInfo
	f.do(t, "POST", "/api/v1/domains", "application/json", strings.NewReader(`{"domain":"shop.test","dual":true}`), 201, &info)
	publish(f.dns, info, domains.KindDKIM)

	tests := []struct {
		name, stream string
		in           string
		wantLU       int // List-Unsubscribe headers in output
	}{
		{"marketing", "marketing", msg, 1},
		{"transactional", "transactional", msg, 0},
		{"marketing with own header", "marketing", "List-Unsubscribe: <https://app.test/u/1>\r\n" + msg, 1},
		{"marketing with trace", "marketing", "Received: from a\r\n by b; Mon, 23 Nov 2026 08:00:00 +0000\r\nReturn-Path: <x@shop.test>\r\n" + msg, 1},
	}
	var oneClick string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := f.e.Prepare(context.Background(), tc.stream, []string{"Carol@Example.org", "dave@example.org"}, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(m.Header["List-Unsubscribe"]); got != tc.wantLU {
				t.Fatalf("%d List-Unsubscribe headers, want %d", got, tc.wantLU)
			}
			// Trace fields stay on top (below the prepended signatures).
			if strings.HasPrefix(tc.in, "Received:") {
				body := string(out[bytes.Index(out, []byte(tc.in[:20])):])
				if !strings.HasPrefix(body, tc.in[:bytes.Index([]byte(tc.in), []byte("From:"))]+"List-Unsubscribe: ") {
					t.Errorf("List-Unsubscribe not right after the trace fields:\n%s", out)
				}
			}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(out), &dkim.VerifyOptions{LookupTXT: lookupTXT(t, f.dns.Addr)})
			if err != nil || len(vs) != 2 {
				t.Fatalf("verifications %d, %v", len(vs), err)
			}
			for _, v := range vs {
				if v.Err != nil || v.Domain != "shop.test" {
					t.Errorf("signature %s: %v", v.Domain, v.Err)
				}
			}
			sig := m.Header.Get("DKIM-Signature")
			if tc.wantLU > 0 && !regexp.MustCompile(`h=[^;]*List-Unsubscribe:List-Unsubscribe`).MatchString(strings.Join(strings.Fields(sig), "")) {
				t.Errorf("List-Unsubscribe not oversigned: %s", sig)
			}
			if tc.name == "marketing" {
				if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
					t.Error("no List-Unsubscribe-Post")
				}
				lu := m.Header.Get("List-Unsubscribe")
				u := regexp.MustCompile(`<https://mail\.petrel\.test(/unsubscribe/[^>]+)>`).FindStringSubmatch(lu)
				if u == nil || !strings.Contains(lu, "<mailto:unsubscribe+") || !strings.Contains(lu, "@bounce.petrel.test>") {
					t.Fatalf("List-Unsubscribe %q", lu)
				}
				oneClick = u[1]
			}
		})
	}
	if oneClick == "" {
		t.Fatal("no one-click URL")
	}

	post := func(path string) int {
		resp, err := http.Post(f.pub.URL+path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(f.pub.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forged := oneClick[:len(oneClick)-3] + "AAA"
	if oneClick[len(oneClick)-3:] == "AAA" {
		forged = oneClick[:len(oneClick)-3] + "BBB"
	}
	for _, p := range []string{forged, "/unsubscribe/garbage", "/unsubscribe/" + strings.Repeat("x.", 600)} {
		if c := post(p); c != 400 {
			t.Errorf("POST %s: %d, want 400", p, c)
		}
	}
	code, page := get(oneClick)
	if code != 200 || !strings.Contains(page, `<form method="post">`) || !strings.Contains(page, "carol@example.org") {
		t.Fatalf("GET page %d: %s", code, page)
	}
	if _, ok := f.e.Suppressed("marketing", "carol@example.org"); ok {
		t.Fatal("suppressed before the POST (a GET must not unsubscribe)")
	}
	if c := post(oneClick); c != 200 {
		t.Fatalf("one-click POST: %d", c)
	}
	tests2 := []struct {
		stream, addr string
		ok           bool
	}{
		{"marketing", "carol@example.org", true},
		{"marketing", "dave@example.org", false},
		{"transactional", "carol@example.org", false},
	}
	for _, tc := range tests2 {
		r, ok := f.e.Suppressed(tc.stream, tc.addr)
		if ok != tc.ok || (ok && r != "unsubscribe") {
			t.Errorf("after one-click: Suppressed(%s,%s) = %q %v", tc.stream, tc.addr, r, ok)
		}
	}
	// mailto form.
	tok := strings.TrimPrefix(oneClick, "/unsubscribe/")
	tok2 := f.e.tokens.Make("marketing", "dave@example.org")
	for _, c := range []struct {
		rcpt    string
		handled bool
		err     bool
	}{
		{"unsubscribe+" + tok2 + "@bounce.petrel.test", true, false},
		{"unsubscribe+" + tok + "x@bounce.petrel.test", true, true},
		{"someone@bounce.petrel.test", false, false},
	} {
		handled, err := f.e.UnsubscribeMailto(c.rcpt)
		if handled != c.handled || (err != nil) != c.err {
			t.Errorf("UnsubscribeMailto(%s) = %v, %v", c.rcpt, handled, err)
		}
	}
	if _, ok := f.e.Suppressed("marketing", "dave@example.org"); !ok {
		t.Error("mailto unsubscribe did not suppress")
	}
}

func TestDomainStatusWarning(t *testing.T) {
	tests := []struct {
		require, smtp, http string
		warn                bool
	}{
		{"none", "127.0.0.1:2525", "127.0.0.1:8025", false},
		{"none", "[::1]:2525", "localhost:8025", false},
		{"none", "0.0.0.0:25", "127.0.0.1:8025", true},
		{"none", "127.0.0.1:2525", ":8025", true},
		{"usable", "0.0.0.0:25", ":8025", false},
		{"verified", "192.0.2.1:25", "", false},
	}
	for _, tc := range tests {
		c := config.Default()
		c.RequireDomainStatus, c.SMTP.Listen, c.HTTP.Listen = tc.require, tc.smtp, tc.http
		if got := DomainStatusWarning(c) != ""; got != tc.warn {
			t.Errorf("%+v: warn = %v", tc, got)
		}
	}
}

func BenchmarkSuppressedFacade(b *testing.B) {
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.DNS.Resolver = "127.0.0.1:1"
	e, err := New(Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for i := 0; b.Loop(); i++ {
		e.Suppressed("marketing", fmt.Sprintf("user%d@example.com", i))
	}
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.DNS.Resolver = "127.0.0.1:1"
		e, err := New(Options{Config: cfg, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Suppress("*", "x@example.com", suppress.ReasonManual, "t"); err != nil {
			t.Fatal(err)
		}
		e.Suppressed("transactional", "X@example.com")
		e.Close()
		if err := e.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "petrel_suppression_hits_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("hits = %v, want 2", v)
			}
			return
		}
	}
	t.Fatal("petrel_suppression_hits_total not registered")
}
