// Package httpapi owns the small conventions every Petrel HTTP API shares:
// JSON responses, JSON error bodies ({"error":{"code":...,"message":...}})
// and bearer API-key authentication. Ingest and the admin endpoints both
// use it, so errors and auth look the same everywhere.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/config"
)

// DefaultStream is the stream of a key that names none.
const DefaultStream = "transactional"

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody.
type ErrorDetail struct {
	// Code is a stable machine-readable code ("invalid_request", ...).
	Code string `json:"code"`
	// Message is for humans.
	Message string `json:"message"`
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing left to tell it
}

// WriteError writes {"error":{"code":code,"message":message}} with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// Key is the API key a request authenticated with.
type Key struct {
	Name string
	// Stream the key's mail belongs to ("transactional" when unset).
	Stream string
	// StreamOnly says the key may send only in Stream (database keys); a
	// configured key's Stream is a default a request may override.
	StreamOnly bool
	// Domains, when not empty, are the only sending domains the key may
	// send from (database keys; ingest refuses others with 403).
	Domains []string
}

type keyCtx struct{}

// KeyFrom returns the key that authenticated the request (set by
// Keys.Require), and false when there is none.
func KeyFrom(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(keyCtx{}).(Key)
	return k, ok
}

// WithKey returns ctx carrying k, as Keys.Require does.
func WithKey(ctx context.Context, k Key) context.Context {
	return context.WithValue(ctx, keyCtx{}, k)
}

// Keys authenticates bearer tokens against the configured API keys. It is
// immutable after NewKeys and safe for concurrent use.
type Keys struct {
	keys []storedKey
}

type storedKey struct {
	sum [sha256.Size]byte
	key Key
}

// NewKeys builds Keys from [[http.api_keys]] entries. Entries with an empty
// key are ignored (config validation refuses them anyway).
func NewKeys(list []config.APIKey) *Keys {
	k := &Keys{}
	for _, c := range list {
		if c.Key == "" {
			continue
		}
		stream := c.Stream
		if stream == "" {
			stream = DefaultStream
		}
		k.keys = append(k.keys, storedKey{sum: sha256.Sum256([]byte(c.Key)), key: Key{Name: c.Name, Stream: stream}})
	}
	return k
}

// Names returns the configured keys' names.
func (k *Keys) Names() []string {
	out := make([]string, len(k.keys))
	for i, s := range k.keys {
		out[i] = s.key.Name
	}
	return out
}

// Lookup finds the key matching token. Tokens are compared as SHA-256
// digests in constant time, and every configured key is compared, so the
// time taken does not depend on which key (if any) matched.
func (k *Keys) Lookup(token string) (Key, bool) {
	if token == "" {
		return Key{}, false
	}
	sum := sha256.Sum256([]byte(token))
	var found Key
	ok := 0
	for i := range k.keys {
		m := subtle.ConstantTimeCompare(sum[:], k.keys[i].sum[:])
		if m == 1 && ok == 0 {
			found = k.keys[i].key
		}
		ok |= m
	}
	return found, ok == 1
}

// Require wraps next so it runs only for requests carrying
// "Authorization: Bearer <key>" with a configured key; the key is then
// available through KeyFrom. Other requests get 401 with a JSON error and
// "WWW-Authenticate: Bearer".
//
// A request whose context already carries a key (the admin router
// authenticated it: a database key or a dashboard session) passes as it
// is.
func (k *Keys) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := KeyFrom(r.Context()); ok {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			CloseAfterReply(w)
			w.Header().Set("WWW-Authenticate", `Bearer realm="petrel"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "missing bearer token")
			return
		}
		key, ok := k.Lookup(token)
		if !ok {
			CloseAfterReply(w)
			w.Header().Set("WWW-Authenticate", `Bearer realm="petrel", error="invalid_token"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "invalid API key")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithKey(r.Context(), key)))
	})
}

// CloseAfterReply is for a refusal that will not read the request body
// (401, 413, 429): the connection closes after the response instead of
// the server reading up to 256 KiB of the unread body at the client's
// pace, which a slow client would stretch to the full read timeout.
func CloseAfterReply(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// BearerToken returns the token of r's "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) { return bearer(r.Header.Get("Authorization")) }

// bearer extracts the token of an "Authorization: Bearer <token>" value.
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
