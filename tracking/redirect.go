package tracking

import (
	"net"
	"net/http"
	"strings"
)

// ACMEChallengePath is the ACME HTTP-01 challenge prefix, which must be
// answered over plain HTTP: the redirect to HTTPS leaves it alone.
const ACMEChallengePath = "/.well-known/acme-challenge/"

// HTTPSFor reports whether this manager serves HTTPS for host (its
// certificate comes from the operator's files, or from ACME for a
// verified tracking domain with HTTPS on): the hosts that a plain-HTTP
// request is redirected for. Any other host, registered or not, is not.
func (c *CertManager) HTTPSFor(host string) bool {
	https, verified := c.doms.httpsHost(host)
	if !https {
		return false
	}
	_, file := c.files[host]
	return verified || file
}

// RedirectHTTP wraps the plain-HTTP listener's handler: a request over
// plain HTTP whose Host is a tracking domain this manager serves HTTPS
// for (HTTPSFor) is redirected to the same host, path and query over
// https:// (on httpsPort when it is not 443, the port of [tracking]
// https_listen): 301 for GET and HEAD, which every mail client's image
// fetcher and every browser follows, 308 for any other method, so the
// RFC 8058 one-click unsubscribe POST keeps its method and body (a 301
// lets a client turn it into a GET). Requests for any other host
// (unknown ones included: no open redirect, the target host is always
// one of ours), requests that came over TLS, and the ACME HTTP-01
// challenge path go to next as before.
func (c *CertManager) RedirectHTTP(next http.Handler, httpsPort string) http.Handler {
	suffix := ""
	if httpsPort != "" && httpsPort != "443" {
		suffix = ":" + httpsPort
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only an origin-form target ("/path?query") is redirected: an
		// opaque one ("GET x:@evil.example/p", "OPTIONS *") would be
		// written after our host and read as another one
		// ("https://track.example.com@evil.example/p").
		if r.TLS != nil || r.URL.Opaque != "" || !strings.HasPrefix(r.URL.Path, "/") || strings.HasPrefix(r.URL.Path, ACMEChallengePath) {
			next.ServeHTTP(w, r)
			return
		}
		host := requestHost(r.Host)
		if host == "" || !c.HTTPSFor(host) {
			next.ServeHTTP(w, r)
			return
		}
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		h := w.Header()
		target := "https://" + host + suffix + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		h["Location"] = []string{target}
		h["Cache-Control"] = hdrNoStore // a cached redirect outlives turning HTTPS off
		w.WriteHeader(code)
	})
}

// requestHost is the Host header's name without port, lower case and
// without a trailing dot; "" for an IPv6 literal or an empty Host. The
// common case (already lower case) does not allocate.
func requestHost(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' { // IPv6 literal
		return ""
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			h = strings.ToLower(h)
			break
		}
	}
	return h
}
