// Package admin owns Petrel's HTTP API surface: the route table of the
// [http] listener (one file per resource), its authentication, applied
// once, per-route body limits, read deadlines and the per-IP cap of the
// public routes. It mounts handlers that the packages provide (ingest's
// injection API, policy's suppressions and domains, events' webhooks and
// stats, verify's jobs) and serves the operator's queue API itself over
// the queue's own methods; it holds no business logic and never touches
// queue keys (the queue stays the only writer of its keyspace).
//
// Every route is mounted through Router.private, which always wraps the
// handler with the API-key check, except the short explicit list mounted
// through Router.public (/unsubscribe/{token}, /healthz, and /metrics as
// [metrics] access says). Routes lists them all, so a test can walk every
// mounted route.
package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/petrel-mta/petrel/account"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Access says who may call a route.
type Access string

// Route access kinds.
const (
	// Private routes need "Authorization: Bearer <API key>" or a
	// dashboard session cookie (401 without; 403 when the role may not).
	Private Access = "key"
	// Public routes answer anyone (their own token, if any, authorises).
	Public Access = "public"
	// Loopback routes answer loopback clients without a key and others
	// with 403.
	Loopback Access = "loopback"
)

// DefaultMaxBody bounds the request body of a route that names no limit.
const DefaultMaxBody = 1 << 20

// HandlerBounded as a route's MaxBody means the handler bounds its body
// itself (a limit that depends on its own config: suppression import,
// verify jobs).
const HandlerBounded = -1

// Route is one mounted ServeMux pattern.
type Route struct {
	// Pattern is the http.ServeMux pattern ("GET /api/v1/queue/stats").
	Pattern string
	Access  Access
	// MaxBody is the request body limit in bytes, or HandlerBounded.
	MaxBody int64
}

// Router is the route table of one listener. Build it with New; it is an
// http.Handler and safe for concurrent use once built.
type Router struct {
	mux        *http.ServeMux
	keys       *httpapi.Keys
	routes     []Route
	publicRead time.Duration
	perIP      *ipLimiter
	log        *slog.Logger
	accounts   *account.Store // nil: API keys only
}

func newRouter(o *Options) *Router {
	r := &Router{mux: http.NewServeMux(), keys: o.Keys, publicRead: o.PublicReadTimeout,
		perIP: newIPLimiter(o.PublicMaxConnsPerIP), log: o.Logger, accounts: o.Accounts}
	if r.keys == nil {
		r.keys = httpapi.NewKeys(nil) // no key opens a private route
	}
	// Anything unmatched is answered after the key check, so an unknown
	// path reveals nothing to a client without a key.
	r.mux.Handle("/", r.auth(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})))
	return r
}

// ServeHTTP implements http.Handler.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// Routes returns every mounted route, in mounting order.
func (r *Router) Routes() []Route { return append([]Route(nil), r.routes...) }

// private mounts h behind auth (an API key or a dashboard session, and
// the role check; it comes first: a client without either is refused
// before its body counts). maxBody 0 means DefaultMaxBody.
func (r *Router) private(pattern string, maxBody int64, h http.Handler) {
	r.mount(Route{Pattern: pattern, Access: Private, MaxBody: maxBody}, h, r.auth)
}

// public mounts h without a key, under the public routes' per-IP cap and
// body deadline. Keep this list short: every caller is named in README.
func (r *Router) public(pattern string, maxBody int64, h http.Handler) {
	r.mount(Route{Pattern: pattern, Access: Public, MaxBody: maxBody}, h, r.publicGuard)
}

// loopback mounts h for loopback clients only, like public otherwise.
func (r *Router) loopback(pattern string, maxBody int64, h http.Handler) {
	guard := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !isLoopback(req.RemoteAddr) {
				httpapi.CloseAfterReply(w)
				httpapi.WriteError(w, http.StatusForbidden, "forbidden", "only loopback clients may read this endpoint without a key")
				return
			}
			r.publicGuard(next).ServeHTTP(w, req)
		})
	}
	r.mount(Route{Pattern: pattern, Access: Loopback, MaxBody: maxBody}, h, guard)
}

// mount registers h under rt, inside its body limit, inside guard (the
// access check, which runs first).
func (r *Router) mount(rt Route, h http.Handler, guard func(http.Handler) http.Handler) {
	if rt.MaxBody == 0 {
		rt.MaxBody = DefaultMaxBody
	}
	if rt.MaxBody > 0 {
		h = maxBody(rt.MaxBody, h)
	}
	r.mux.Handle(rt.Pattern, guard(h))
	r.routes = append(r.routes, rt)
}

// maxBody refuses a declared Content-Length over n at once and cuts a
// longer body at n (the handler's read fails with *http.MaxBytesError).
func maxBody(n int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength > n {
			httpapi.CloseAfterReply(w)
			httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", n))
			return
		}
		req.Body = http.MaxBytesReader(w, req.Body, n)
		h.ServeHTTP(w, req)
	})
}

// publicGuard applies the public routes' per-IP cap and body deadline.
func (r *Router) publicGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ip := clientIP(req.RemoteAddr)
		if !r.perIP.acquire(ip) {
			httpapi.CloseAfterReply(w)
			w.Header().Set("Retry-After", "1")
			httpapi.WriteError(w, http.StatusTooManyRequests, "too_many_connections",
				fmt.Sprintf("more than %d requests in progress from %s", r.perIP.max, ip))
			return
		}
		defer r.perIP.release(ip)
		if req.Body == nil || req.Body == http.NoBody {
			// No body: no deadline to set. (A read deadline that passes
			// while net/http's background read waits on the connection
			// cancels the connection's context, and with it every later
			// request on that keep-alive connection.)
			h.ServeHTTP(w, req)
			return
		}
		rc := http.NewResponseController(w)
		if r.publicRead > 0 {
			// The server's ReadTimeout is sized for injections; a public
			// body gets much less.
			_ = rc.SetReadDeadline(time.Now().Add(r.publicRead))
		}
		body := &eofReader{ReadCloser: req.Body, rc: rc}
		req.Body = body
		h.ServeHTTP(w, req)
		if body.eof {
			return // fully read: the connection stays usable
		}
		// Whatever of the body the handler left unread is not read
		// after it at the client's pace (outside the per-IP count): the
		// connection closes instead.
		_ = rc.SetReadDeadline(time.Now())
	})
}

// eofReader records whether its body was read to the end, and then lifts
// the body's read deadline at once: net/http starts its background read
// on the connection at that EOF, and a deadline passing under it (while
// the handler still works) would cancel the request's context. The
// server sets fresh deadlines for the next request.
type eofReader struct {
	io.ReadCloser
	rc  *http.ResponseController
	eof bool
}

func (b *eofReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.eof {
		b.eof = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// clientIP is the host part of a RemoteAddr.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// isLoopback reports whether the peer is on 127.0.0.0/8 or ::1. Proxy
// headers (X-Forwarded-For) are not trusted.
func isLoopback(remoteAddr string) bool {
	ip := net.ParseIP(clientIP(remoteAddr))
	return ip != nil && ip.IsLoopback()
}

// ipLimiter counts requests in progress per client IP.
type ipLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newIPLimiter(max int) *ipLimiter {
	if max <= 0 {
		max = 16
	}
	return &ipLimiter{max: max, n: map[string]int{}}
}

func (l *ipLimiter) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *ipLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}
