package admin

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/petrel-mta/petrel/account"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// auth is the check every private route passes first. A request is
// authenticated by either
//
//   - "Authorization: Bearer <key>": a configured [[http.api_keys]] key
//     (full access) or a database key (account.Key, its role), or
//   - the dashboard's session cookie (account.SessionCookie), when no
//     Authorization header is sent. An unsafe method (POST, PUT, PATCH,
//     DELETE) then needs the session's CSRF token in X-CSRF-Token, and a
//     cross-origin Origin header is refused: both 403.
//
// The principal's role is then checked against the route
// (account.Allowed): 403 when it may not. The handler finds the
// principal through account.PrincipalFrom and the key (name, stream)
// through httpapi.KeyFrom.
func (r *Router) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, key, ok := r.authenticate(w, req)
		if !ok {
			return
		}
		if !account.Allowed(p.Role, req.Method, req.URL.Path) {
			httpapi.WriteError(w, http.StatusForbidden, "forbidden", "the "+string(p.Role)+" role may not "+req.Method+" "+req.URL.Path)
			return
		}
		ctx := account.WithPrincipal(httpapi.WithKey(req.Context(), key), p)
		next.ServeHTTP(w, req.WithContext(ctx))
	})
}

// authenticate finds the request's principal or answers 401/403.
func (r *Router) authenticate(w http.ResponseWriter, req *http.Request) (account.Principal, httpapi.Key, bool) {
	if req.Header.Get("Authorization") != "" || r.accounts == nil {
		return r.bearer(w, req)
	}
	c, err := req.Cookie(account.SessionCookie)
	if err != nil {
		return r.bearer(w, req) // neither: the bearer check's 401
	}
	sess, err := r.accounts.Session(req.Context(), c.Value)
	if err != nil {
		httpapi.CloseAfterReply(w)
		if errors.Is(err, account.ErrNotFound) {
			httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized", "session expired or unknown: sign in again")
		} else {
			httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		}
		return account.Principal{}, httpapi.Key{}, false
	}
	if !account.Safe(req.Method) {
		if o := req.Header.Get("Origin"); o != "" && !sameOrigin(o, req) {
			httpapi.CloseAfterReply(w)
			httpapi.WriteError(w, http.StatusForbidden, "cross_origin", "cross-origin request refused")
			return account.Principal{}, httpapi.Key{}, false
		}
		if !account.CheckCSRF(c.Value, req.Header.Get(account.CSRFHeader)) {
			httpapi.CloseAfterReply(w)
			httpapi.WriteError(w, http.StatusForbidden, "csrf", "missing or wrong "+account.CSRFHeader+" header")
			return account.Principal{}, httpapi.Key{}, false
		}
	}
	u := sess.User
	return account.Principal{Role: u.Role, User: &u, SessionID: c.Value},
		httpapi.Key{Name: "user:" + u.Email, Stream: httpapi.DefaultStream}, true
}

// bearer authenticates by API key: configured keys first, then the
// database's.
func (r *Router) bearer(w http.ResponseWriter, req *http.Request) (account.Principal, httpapi.Key, bool) {
	token, ok := httpapi.BearerToken(req)
	if !ok {
		httpapi.CloseAfterReply(w)
		w.Header().Set("WWW-Authenticate", `Bearer realm="petrel"`)
		httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized", "missing bearer token")
		return account.Principal{}, httpapi.Key{}, false
	}
	if k, ok := r.keys.Lookup(token); ok {
		return account.Principal{Role: account.Owner, Key: k.Name}, k, true
	}
	if r.accounts != nil {
		if k, err := r.accounts.LookupKey(req.Context(), token); err == nil {
			return account.Principal{Role: k.Role, Key: k.Name}, k.Limits(), true
		}
	}
	httpapi.CloseAfterReply(w)
	w.Header().Set("WWW-Authenticate", `Bearer realm="petrel", error="invalid_token"`)
	httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized", "invalid API key")
	return account.Principal{}, httpapi.Key{}, false
}

// sameOrigin reports whether an Origin header names the request's host.
func sameOrigin(origin string, req *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == req.Host
}

// mountAccounts mounts the account API (account.Store.Handler) behind
// auth, and the dashboard's login (public: it is how a session starts,
// under the public routes' per-IP cap; failures are rate limited per
// email and client by account).
func (r *Router) mountAccounts(o Options) {
	if o.Accounts == nil {
		return
	}
	h := o.Accounts.Handler()
	r.private("GET /api/v1/session", 0, h)
	r.private("DELETE /api/v1/session", 0, h)
	r.private("GET /api/v1/users", 0, h)
	r.private("POST /api/v1/users", 0, h)
	r.private("PATCH /api/v1/users/{id}", 0, h)
	r.private("DELETE /api/v1/users/{id}", 0, h)
	r.private("GET /api/v1/keys", 0, h)
	r.private("POST /api/v1/keys", 0, h)
	r.private("DELETE /api/v1/keys/{id}", 0, h)
	r.public("POST /ui/login", 64<<10, o.Accounts.LoginHandler())
}
