package account

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Principal is who a request is authenticated as: a session user or an
// API key (configured or from the database).
type Principal struct {
	// Role bounds what the principal may do.
	Role Role
	// User is set for a session; Key for an API key (its name).
	User *User
	Key  string
	// SessionID is the session's id when authenticated by cookie (the
	// CSRF check and logout need it).
	SessionID string
}

type principalCtx struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalCtx{}, p)
}

// PrincipalFrom returns the principal admin's auth put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalCtx{}).(Principal)
	return p, ok
}

// ownerOnly are the API paths only an owner may use at all: users, keys
// and operations (queue, policy, shaping streams, webhooks, profiling).
var ownerOnly = []string{"/api/v1/users", "/api/v1/keys", "/api/v1/queue", "/api/v1/policy", "/api/v1/streams", "/api/v1/webhooks", "/api/v1/events", "/debug/"}

// ownerWrites are the paths a marketer may read but not change
// (suppressions are operations; verification jobs cost probes).
var ownerWrites = []string{"/api/v1/suppressions", "/api/v1/verify"}

// Safe reports whether method only reads.
func Safe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// Allowed reports whether role may call method on path. A viewer only
// reads; a marketer does everything except users, keys and operations;
// an owner does everything. Reading one's own session is always allowed.
func Allowed(role Role, method, path string) bool {
	if path == "/api/v1/session" {
		return true
	}
	switch role {
	case Owner:
		return true
	case Marketer:
		if hasPrefix(path, ownerOnly) {
			return false
		}
		return Safe(method) || !hasPrefix(path, ownerWrites)
	case Viewer:
		return Safe(method) && !hasPrefix(path, ownerOnly)
	}
	return false
}

func hasPrefix(path string, list []string) bool {
	for _, p := range list {
		if path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// limiter counts failed logins per key (an email or a client) in a
// window; max failures lock the key out until the window ends.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	fails  map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, now: now, fails: map[string]*failures{}}
}

func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[key]
	if f == nil {
		return true
	}
	if l.now().Sub(f.start) >= l.window {
		delete(l.fails, key)
		return true
	}
	return f.n < l.max
}

func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) > 100000 { // bounded memory under a spray: drop expired entries
		for k, f := range l.fails {
			if now.Sub(f.start) >= l.window {
				delete(l.fails, k)
			}
		}
	}
	f := l.fails[key]
	if f == nil || now.Sub(f.start) >= l.window {
		f = &failures{start: now}
		l.fails[key] = f
	}
	f.n++
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
