package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

func TestPickLang(t *testing.T) {
	for _, tt := range []struct{ header, want string }{
		{"", "en"},
		{"en-US,en;q=0.9", "en"},
		{"zh-TW,zh;q=0.9,en;q=0.8", "zh-Hant"},
		{"zh-Hant-HK", "zh-Hant"},
		{"zh-HK", "zh-Hant"},
		{"zh", "zh-Hant"},
		{"fr-FR,fr;q=0.9", "en"},
		{"en;q=0.5,zh-TW;q=0.8", "zh-Hant"},
		{"zh-TW;q=0,en", "en"},
		{"zh-TW;q=bogus,en;q=0.1", "en"},
		{"*", "en"},
	} {
		if got := pickLang(tt.header); got != tt.want {
			t.Errorf("pickLang(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

// FuzzPickLang: any Accept-Language header gives one of the catalogs.
func FuzzPickLang(f *testing.F) {
	for _, s := range []string{"en-US,en;q=0.9", "zh-TW;q=0.8", ";;;,q=", "zh-Hant;q=1.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if got := pickLang(h); got != "en" && got != "zh-Hant" {
			t.Fatalf("pickLang(%q) = %q", h, got)
		}
	})
}

// TestUIServed: the dashboard's shell is public, names the language the
// client asked for, forbids framing and inline script by CSP; its
// modules are served with a JavaScript type; the API behind it still
// needs a key or a session.
func TestUIServed(t *testing.T) {
	srv := httptest.NewServer(New(Options{Keys: httpapi.NewKeys([]config.APIKey{{Key: key}}), UI: true}))
	defer srv.Close()
	get := func(path, lang string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept-Language", lang)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/ui/", "zh-TW,en;q=0.5")
	if resp.StatusCode != 200 || !strings.Contains(body, `<html lang="zh-Hant">`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("/ui/: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if _, body := get("/ui/", "en"); !strings.Contains(body, `<html lang="en">`) {
		t.Errorf("English shell: %q", body)
	}
	for _, p := range []string{"/ui/app.js", "/ui/i18n.js", "/ui/pages/audiences.js", "/ui/style.css"} {
		resp, body := get(p, "")
		if resp.StatusCode != 200 || len(body) < 100 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if strings.HasSuffix(p, ".js") && !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
			t.Errorf("%s Content-Type %q", p, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(body, "innerHTML") || strings.Contains(body, "insertAdjacentHTML") || strings.Contains(body, "document.write") {
			t.Errorf("%s writes HTML from strings", p)
		}
	}
	// A file's ETag makes its revalidation a 304 without a body; a
	// changed file (another tag) is served again.
	resp, _ = get("/ui/app.js", "")
	tag := resp.Header.Get("ETag")
	for _, c := range []struct {
		tag  string
		want int
	}{{tag, 304}, {`"other"`, 200}} {
		req, _ := http.NewRequest("GET", srv.URL+"/ui/app.js", nil)
		req.Header.Set("If-None-Match", c.tag)
		r, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if tag == "" || r.StatusCode != c.want || (c.want == 304 && len(b) != 0) {
			t.Errorf("app.js with If-None-Match %s (ETag %s): %d, %d bytes; want %d", c.tag, tag, r.StatusCode, len(b), c.want)
		}
	}
	if resp, _ := get("/ui/nope.js", ""); resp.StatusCode != 404 {
		t.Errorf("unknown asset: %d", resp.StatusCode)
	}
	if resp, _ := get("/api/v1/session", ""); resp.StatusCode != 401 {
		t.Errorf("API without key or session: %d", resp.StatusCode)
	}
}
