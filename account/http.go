package account

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// SessionCookie is the name of the session cookie.
const SessionCookie = "petrel_session"

// CSRFHeader carries the CSRF token of a cookie-authenticated unsafe
// request.
const CSRFHeader = "X-CSRF-Token"

// Handler serves the account API (admin mounts it behind its auth, which
// has already checked the role with Allowed):
//
//	GET    /api/v1/session          who am I: user or key, role, CSRF token
//	DELETE /api/v1/session          log out (ends the cookie's session)
//	GET    /api/v1/users            list users
//	POST   /api/v1/users            {"email","name","password","role"}
//	PATCH  /api/v1/users/{id}       {"role"} and/or {"password"}
//	DELETE /api/v1/users/{id}
//	GET    /api/v1/keys             list database API keys (no secrets)
//	POST   /api/v1/keys             {"name","role","stream","domains"} → the secret, once
//	DELETE /api/v1/keys/{id}
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/session", s.whoami)
	mux.HandleFunc("DELETE /api/v1/session", s.logout)
	mux.HandleFunc("GET /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		us, err := s.Users(r.Context())
		reply(w, http.StatusOK, map[string]any{"users": us}, err)
	})
	mux.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Email, Name, Password string
			Role                  Role
		}
		if !decode(w, r, &in) {
			return
		}
		u, err := s.AddUser(r.Context(), in.Email, in.Name, in.Password, in.Role)
		reply(w, http.StatusCreated, u, err)
	})
	mux.HandleFunc("PATCH /api/v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		var in struct {
			Role     Role
			Password string
		}
		if !decode(w, r, &in) {
			return
		}
		var err error
		if in.Role != "" {
			err = s.SetRole(r.Context(), id, in.Role)
		}
		if err == nil && in.Password != "" {
			err = s.SetPassword(r.Context(), id, in.Password)
		}
		var u User
		if err == nil {
			u, err = s.User(r.Context(), id)
		}
		reply(w, http.StatusOK, u, err)
	})
	mux.HandleFunc("DELETE /api/v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := pathID(w, r); ok {
			reply(w, http.StatusOK, map[string]any{"deleted": id}, s.DeleteUser(r.Context(), id))
		}
	})
	mux.HandleFunc("GET /api/v1/keys", func(w http.ResponseWriter, r *http.Request) {
		ks, err := s.Keys(r.Context())
		reply(w, http.StatusOK, map[string]any{"keys": ks}, err)
	})
	mux.HandleFunc("POST /api/v1/keys", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name, Stream string
			Role         Role
			Domains      []string
		}
		if !decode(w, r, &in) {
			return
		}
		secret, k, err := s.CreateKey(r.Context(), in.Name, in.Role, in.Stream, in.Domains)
		reply(w, http.StatusCreated, map[string]any{"key": k, "secret": secret}, err)
	})
	mux.HandleFunc("DELETE /api/v1/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := pathID(w, r); ok {
			reply(w, http.StatusOK, map[string]any{"deleted": id}, s.DeleteKey(r.Context(), id))
		}
	})
	return mux
}

func (s *Store) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	out := map[string]any{"role": p.Role}
	if p.User != nil {
		out["user"] = p.User
		out["csrf"] = CSRFToken(p.SessionID)
	} else {
		out["key"] = p.Key
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Store) logout(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	if p.SessionID == "" {
		httpapi.WriteError(w, http.StatusBadRequest, "no_session", "the request is not authenticated by a session")
		return
	}
	if err := s.Logout(r.Context(), p.SessionID); err != nil {
		reply(w, 0, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"logged_out": true})
}

// LoginHandler serves POST of {"email","password"} (JSON or a form): on
// success it sets a new session cookie (HttpOnly, SameSite=Strict,
// Secure over TLS) and answers the user and the CSRF token; a session
// cookie the request carried is ended first. Wrong credentials are 401,
// too many failures 429.
func (s *Store) LoginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Email, Password string }
		if r.Header.Get("Content-Type") == "application/json" {
			if !decode(w, r, &in) {
				return
			}
		} else {
			in.Email, in.Password = r.PostFormValue("email"), r.PostFormValue("password")
		}
		if in.Email == "" || in.Password == "" {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "email and password are required")
			return
		}
		if old, err := r.Cookie(SessionCookie); err == nil {
			_ = s.Logout(r.Context(), old.Value) // never reused: no fixation
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		// A login the client gives up on still completes (its cookie is
		// lost, no harm); the password hash is slow under load.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		defer cancel()
		id, sess, err := s.Login(ctx, in.Email, in.Password, host)
		if err != nil {
			if errors.Is(err, ErrRateLimited) {
				w.Header().Set("Retry-After", strconv.Itoa(int(s.opts.LoginWindow/time.Second)))
			}
			reply(w, 0, nil, err)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", MaxAge: int(s.opts.SessionMax / time.Second),
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteJSON(w, http.StatusOK, sess)
	})
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "id must be a number")
		return 0, false
	}
	return id, true
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return false
	}
	return true
}

// reply writes v with status, or err as its HTTP error.
func reply(w http.ResponseWriter, status int, v any, err error) {
	switch {
	case err == nil:
		httpapi.WriteJSON(w, status, v)
	case errors.Is(err, ErrBadCredentials):
		httpapi.WriteError(w, http.StatusUnauthorized, "bad_credentials", "wrong email or password")
	case errors.Is(err, ErrRateLimited):
		httpapi.WriteError(w, http.StatusTooManyRequests, "rate_limited", err.Error())
	case errors.Is(err, ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrExists):
		httpapi.WriteError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrLastOwner):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
	default:
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
