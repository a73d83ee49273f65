package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
)

// uiFiles is the web dashboard: static HTML, CSS and vanilla-JS ES
// modules, no build step. The pages call the same JSON API as apps do,
// authenticated by the session cookie.
//
//go:embed ui
var uiFiles embed.FS

// uiCSP keeps the dashboard to its own assets: no inline script, no
// other origin, no framing (template previews are sandboxed srcdoc
// frames, which inherit it).
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// mountUI mounts the dashboard's static files (public: they hold no
// data, every page asks the API, which needs the session). /ui/ itself
// is index.html with <html lang> chosen from Accept-Language.
func (r *Router) mountUI(o Options) {
	if !o.UI {
		return
	}
	sub, _ := fs.Sub(uiFiles, "ui") // the embedded directory exists
	index, _ := fs.ReadFile(sub, "index.html")
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	// Every file gets a strong ETag of its content, so the revalidation
	// no-cache asks for is a 304 without a body (embedded files have no
	// modification time to answer If-Modified-Since with).
	etags := map[string]string{}
	_ = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := fs.ReadFile(sub, path); err == nil {
				sum := sha256.Sum256(b)
				etags["/ui/"+path] = `"` + hex.EncodeToString(sum[:12]) + `"`
			}
		}
		return nil
	})
	r.public("GET /ui/", 0, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if req.URL.Path == "/ui/" || req.URL.Path == "/ui/index.html" {
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Vary", "Accept-Language")
			_, _ = w.Write(bytes.Replace(index, []byte(`lang="en"`), []byte(`lang="`+pickLang(req.Header.Get("Accept-Language"))+`"`), 1))
			return
		}
		if tag, ok := etags[req.URL.Path]; ok {
			h.Set("ETag", tag)
		}
		files.ServeHTTP(w, req)
	}))
}

// pickLang chooses the dashboard's language from an Accept-Language
// header: "zh-Hant" for the Chinese ranges that write Traditional
// characters (zh-Hant, zh-TW, zh-HK, zh-MO and plain zh), "en" otherwise,
// by the client's q-values (first wins on a tie).
func pickLang(header string) string {
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		var lang string
		switch {
		case tag == "zh" || strings.HasPrefix(tag, "zh-hant") || tag == "zh-tw" || tag == "zh-hk" || tag == "zh-mo":
			lang = "zh-Hant"
		case tag == "en" || strings.HasPrefix(tag, "en-") || tag == "*":
			lang = "en"
		default:
			continue
		}
		if q > bestQ && q > 0 {
			best, bestQ = lang, q
		}
	}
	return best
}
