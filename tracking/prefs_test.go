package tracking

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/policy/unsub"
)

// prefsEnv is a preference centre over a real audience store, a real
// suppression store and real HTTP on loopback.
type prefsEnv struct {
	t      *testing.T
	store  *audience.Store
	supp   *suppress.Store
	tokens *unsub.Tokens
	srv    *httptest.Server
	auds   map[string]audience.Audience
}

func newPrefsEnv(t *testing.T, backend string) *prefsEnv {
	ctx := context.Background()
	st, err := audience.Open(ctx, testnet.ESPDSN(t, backend), audience.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	supp, err := suppress.Open(filepath.Join(t.TempDir(), "suppression"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { supp.Close() })
	tokens, err := unsub.New(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := &Preferences{Parse: tokens.Parse, Store: st, Suppress: func(stream, rcpt, via string) error {
		_, err := supp.Add(suppress.Entry{Address: rcpt, Stream: stream, Reason: suppress.ReasonUnsubscribe, Source: "list-unsubscribe:" + via})
		return err
	}}
	e := &prefsEnv{t: t, store: st, supp: supp, tokens: tokens, srv: httptest.NewServer(p.Handler()), auds: map[string]audience.Audience{}}
	t.Cleanup(e.srv.Close)
	for _, n := range []string{"news", "offers"} {
		a, err := st.CreateAudience(ctx, audience.Audience{Name: n})
		if err != nil {
			t.Fatal(err)
		}
		e.auds[n] = a
	}
	return e
}

func (e *prefsEnv) contact(list, addr string) audience.Contact {
	c, _, err := e.store.UpsertContact(context.Background(), e.auds[list].ID, audience.ContactInput{Email: addr})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *prefsEnv) status(list string, id int64) audience.Status {
	c, err := e.store.Contact(context.Background(), e.auds[list].ID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Status
}

// do sends a request and returns the status and body.
func (e *prefsEnv) do(method, path, lang string, form url.Values, hdr ...string) (int, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if lang != "" {
		req.Header.Set("Accept-Language", lang)
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 test")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Cache-Control") != "no-store" {
		e.t.Errorf("%s %s: Cache-Control %q", method, path, resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, string(b)
}

func (e *prefsEnv) suppressed(stream, addr string) bool {
	_, err := e.supp.Get(stream, addr)
	return err == nil
}

// TestPreferenceCentre walks the preference centre on both backends: the
// page lists the address's audiences (localised by Accept-Language, a GET
// changes nothing), leaving one list unsubscribes only there with a
// consent withdrawal and no suppression, a cross-site browser POST is
// refused, leaving the last list suppresses the address, the RFC 8058
// one-click POST unsubscribes from everything, a transactional-stream
// token offers no lists and touches no contact, and forged tokens are 400
// without personal data.
func TestPreferenceCentre(t *testing.T) {
	for _, backend := range testnet.ESPBackends {
		t.Run(backend, func(t *testing.T) {
			e := newPrefsEnv(t, backend)
			ctx := context.Background()
			annNews, annOffers := e.contact("news", "ann@example.test"), e.contact("offers", "Ann@Example.test")
			bobNews := e.contact("news", "bob@example.test")
			tok := e.tokens.Make("marketing", "ann@example.test")

			code, body := e.do("GET", "/unsubscribe/"+tok, "zh-TW,zh;q=0.9,en;q=0.5", nil)
			if code != 200 || !strings.Contains(body, `<html lang="zh-Hant">`) || !strings.Contains(body, "電子郵件偏好設定") ||
				!strings.Contains(body, "儲存設定") || strings.Contains(body, "Save preferences") {
				t.Fatalf("zh page: %d\n%s", code, body)
			}
			for _, n := range []string{"news", "offers"} {
				if !strings.Contains(body, `value="`+itoa(e.auds[n].ID)+`" checked`) {
					t.Fatalf("list %s not offered checked:\n%s", n, body)
				}
			}
			code, body = e.do("GET", "/preferences/"+tok, "", nil)
			if code != 200 || !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "Save preferences") {
				t.Fatalf("en page: %d\n%s", code, body)
			}
			if e.status("news", annNews.ID) != audience.Active || e.suppressed("marketing", "ann@example.test") {
				t.Fatal("a GET changed something")
			}

			// A browser POST from another site is refused before anything changes.
			keepOffers := url.Values{"action": {"save"}, "keep": {itoa(e.auds["offers"].ID)}}
			if code, _ := e.do("POST", "/preferences/"+tok, "", keepOffers, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
				t.Fatalf("cross-site POST: %d", code)
			}
			if code, _ := e.do("POST", "/preferences/"+tok, "", keepOffers, "Origin", "https://evil.test"); code != http.StatusForbidden {
				t.Fatalf("cross-origin POST: %d", code)
			}
			if e.status("news", annNews.ID) != audience.Active {
				t.Fatal("refused POST changed the contact")
			}

			code, body = e.do("POST", "/preferences/"+tok, "en", keepOffers, "Sec-Fetch-Site", "same-origin")
			if code != 200 || !strings.Contains(body, `role="status">Your preferences are saved.`) {
				t.Fatalf("save: %d\n%s", code, body)
			}
			if e.status("news", annNews.ID) != audience.Unsubscribed || e.status("offers", annOffers.ID) != audience.Active ||
				e.status("news", bobNews.ID) != audience.Active || e.suppressed("marketing", "ann@example.test") {
				t.Fatal("leaving one list: wrong statuses or suppressed")
			}
			l, err := e.store.Consent(ctx, e.auds["news"].ID, annNews.ID)
			if err != nil || len(l) != 1 || l[0].Action != audience.Withdrawn || l[0].Source != "preference_centre" || l[0].UserAgent != "Mozilla/5.0 test" || l[0].IP != "127.0.0.1" {
				t.Fatalf("ledger %v %+v", err, l)
			}

			// Unchecking the last list is leaving everything: suppressed too.
			code, body = e.do("POST", "/preferences/"+tok, "zh-Hant", url.Values{"action": {"save"}}, "Sec-Fetch-Site", "same-origin")
			if code != 200 || !strings.Contains(body, "將不會再收到行銷郵件") {
				t.Fatalf("save none: %d\n%s", code, body)
			}
			if e.status("offers", annOffers.ID) != audience.Unsubscribed || !e.suppressed("marketing", "ann@example.test") {
				t.Fatal("leaving the last list did not suppress")
			}

			// RFC 8058 one-click, as a mailbox provider sends it.
			code, _ = e.do("POST", "/unsubscribe/"+e.tokens.Make("marketing", "bob@example.test"), "", url.Values{"List-Unsubscribe": {"One-Click"}})
			if code != 200 || e.status("news", bobNews.ID) != audience.Unsubscribed || !e.suppressed("marketing", "bob@example.test") {
				t.Fatalf("one-click: %d, status %s", code, e.status("news", bobNews.ID))
			}
			if l, _ := e.store.Consent(ctx, e.auds["news"].ID, bobNews.ID); len(l) != 1 || l[0].Source != "unsubscribe" {
				t.Fatalf("one-click ledger %+v", l)
			}

			// Another stream's token: no lists, and leaving touches no contact.
			carol := e.contact("news", "carol@example.test")
			txn := e.tokens.Make("transactional", "carol@example.test")
			if code, body := e.do("GET", "/preferences/"+txn, "", nil); code != 200 || strings.Contains(body, `name="keep"`) {
				t.Fatalf("transactional page: %d\n%s", code, body)
			}
			if code, _ := e.do("POST", "/preferences/"+txn, "", url.Values{"action": {"all"}}); code != 200 ||
				!e.suppressed("transactional", "carol@example.test") || e.status("news", carol.ID) != audience.Active {
				t.Fatalf("transactional leave-all: %d", code)
			}

			for _, bad := range []string{tok[:len(tok)-2], strings.Replace(tok, ".", "x.", 1), "garbage", e.tokens.Make("marketing", "ann@example.test") + "A"} {
				for _, m := range []string{"GET", "POST"} {
					code, body := e.do(m, "/preferences/"+bad, "", url.Values{"action": {"all"}})
					if code != 400 || strings.Contains(body, "ann@") || !strings.Contains(body, `role="alert"`) {
						t.Fatalf("%s forged %q: %d\n%s", m, bad, code, body)
					}
				}
			}
		})
	}
}

// TestPreferenceLanguage: Accept-Language picks English or Traditional
// Chinese (the x/text matcher, q-values honoured), English otherwise.
func TestPreferenceLanguage(t *testing.T) {
	l := newLocalizer()
	for _, c := range []struct{ accept, want string }{
		{"", "en"}, {"en-US,en;q=0.9", "en"}, {"zh-TW", "zh-Hant"}, {"zh-HK", "zh-Hant"}, {"zh-Hant", "zh-Hant"},
		{"fr-FR, de;q=0.8", "en"}, {"en;q=0.3, zh-TW;q=0.8", "zh-Hant"}, {"zh-TW;q=0.1, en", "en"}, {"!!!;;;", "en"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Language", c.accept)
		if got, _ := l.pick(r); got.String() != c.want {
			t.Errorf("Accept-Language %q: %s, want %s", c.accept, got, c.want)
		}
	}
	_, zh := l.pick(func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Language", "zh-TW")
		return r
	}())
	for en, want := range messages {
		if strings.Contains(en, "%") {
			continue
		}
		if got := zh.Sprintf(en); got != want {
			t.Errorf("catalog %q: %q, want %q", en, got, want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
