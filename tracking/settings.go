package tracking

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"golang.org/x/net/idna"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Setting scopes: a sending domain's defaults, and an API key's
// overrides of them.
const (
	ScopeDomain = "domain"
	ScopeKey    = "key"
)

// Switches are open, click and unsubscribe tracking of one scope; nil
// inherits (a key from its message's sending domain, a domain from the
// defaults: opens and clicks on, unsubscribe as the stream says).
//
// Unsubscribe is whether Petrel adds its List-Unsubscribe header (the
// one-click link of the preference centre) to API messages: nil follows
// [sending] list_unsubscribe_streams, true adds it in every stream, false
// never. Campaign mail is marketing and always carries it.
type Switches struct {
	Opens       *bool `json:"opens"`
	Clicks      *bool `json:"clicks"`
	Unsubscribe *bool `json:"unsubscribe"`
}

// Over returns s with every nil switch taken from base.
func (s Switches) Over(base Switches) Switches {
	if s.Opens == nil {
		s.Opens = base.Opens
	}
	if s.Clicks == nil {
		s.Clicks = base.Clicks
	}
	if s.Unsubscribe == nil {
		s.Unsubscribe = base.Unsubscribe
	}
	return s
}

// Effective is what applies to a message: Unsubscribe nil means the
// stream's default.
type Effective struct {
	Opens       bool  `json:"opens"`
	Clicks      bool  `json:"clicks"`
	Unsubscribe *bool `json:"unsubscribe"`
}

// ScopeSetting is one stored row.
type ScopeSetting struct {
	Scope string `json:"scope"`
	Name  string `json:"name"`
	Switches
}

// Settings keeps the tracking switches per sending domain and per API
// key in the ESP database (table tracking_settings). Reads are served
// from a snapshot refreshed on every write, so a message pays no query.
type Settings struct {
	db *sql.DB
	pg bool
	// KnownKey, when set, says whether an API key name exists (database
	// keys and [[http.api_keys]]): a setting for an unknown key is
	// refused (404).
	KnownKey func(ctx context.Context, name string) bool

	mu   sync.RWMutex
	rows map[string]Switches // scope + "\x00" + name
}

// NewSettings opens the settings on db (creating the table).
func NewSettings(ctx context.Context, db *sql.DB, postgres bool) (*Settings, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS tracking_settings (
		scope TEXT NOT NULL,
		name TEXT NOT NULL,
		opens BOOLEAN,
		clicks BOOLEAN,
		unsubscribe BOOLEAN,
		PRIMARY KEY (scope, name))`); err != nil {
		return nil, fmt.Errorf("tracking: settings table: %w", err)
	}
	s := &Settings{db: db, pg: postgres}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Settings) q(query string) string { return sqlq.Rebind(s.pg, query) }

func (s *Settings) reload(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT scope, name, opens, clicks, unsubscribe FROM tracking_settings`)
	if err != nil {
		return fmt.Errorf("tracking: settings: %w", err)
	}
	defer rows.Close()
	m := map[string]Switches{}
	for rows.Next() {
		var scope, name string
		var o, c, u sql.NullBool
		if err := rows.Scan(&scope, &name, &o, &c, &u); err != nil {
			return fmt.Errorf("tracking: settings: %w", err)
		}
		m[scope+"\x00"+name] = Switches{Opens: nullBool(o), Clicks: nullBool(c), Unsubscribe: nullBool(u)}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("tracking: settings: %w", err)
	}
	s.mu.Lock()
	s.rows = m
	s.mu.Unlock()
	return nil
}

func nullBool(b sql.NullBool) *bool {
	if !b.Valid {
		return nil
	}
	return &b.Bool
}

func sqlBool(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// ErrInvalidScope is returned for a scope other than domain or key, or
// an empty or malformed name.
var ErrInvalidScope = errors.New("tracking: invalid settings scope")

// ErrUnknownKey is returned for a setting of an API key that does not
// exist.
var ErrUnknownKey = errors.New("tracking: no such API key")

func (s *Settings) normal(ctx context.Context, scope, name string) (string, error) {
	switch scope {
	case ScopeDomain:
		return checkHost(name)
	case ScopeKey:
		name = strings.TrimSpace(name)
		if name == "" || len(name) > 200 || strings.ContainsAny(name, "\x00\r\n") {
			return "", fmt.Errorf("%w: key name %q", ErrInvalidScope, name)
		}
		if s.KnownKey != nil && !s.KnownKey(ctx, name) {
			return "", fmt.Errorf("%w: %s", ErrUnknownKey, name)
		}
		return name, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidScope, scope)
}

// Get returns the stored switches of one scope (all nil when none).
func (s *Settings) Get(scope, name string) Switches {
	if scope == ScopeDomain {
		name = normalHost(name)
		if a, err := idna.Lookup.ToASCII(name); err == nil {
			name = a // stored in ASCII (checkHost)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rows[scope+"\x00"+name]
}

// Set stores the switches of one scope; all nil deletes the row.
func (s *Settings) Set(ctx context.Context, scope, name string, sw Switches) (ScopeSetting, error) {
	name, err := s.normal(ctx, scope, name)
	if err != nil {
		return ScopeSetting{}, err
	}
	if sw == (Switches{}) {
		if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM tracking_settings WHERE scope = ? AND name = ?`), scope, name); err != nil {
			return ScopeSetting{}, fmt.Errorf("tracking: settings: %w", err)
		}
	} else if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO tracking_settings (scope, name, opens, clicks, unsubscribe) VALUES (?,?,?,?,?)
		ON CONFLICT (scope, name) DO UPDATE SET opens = excluded.opens, clicks = excluded.clicks, unsubscribe = excluded.unsubscribe`),
		scope, name, sqlBool(sw.Opens), sqlBool(sw.Clicks), sqlBool(sw.Unsubscribe)); err != nil {
		return ScopeSetting{}, fmt.Errorf("tracking: settings: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		return ScopeSetting{}, err
	}
	return ScopeSetting{Scope: scope, Name: name, Switches: sw}, nil
}

// List returns every stored setting, domains first, by name.
func (s *Settings) List() []ScopeSetting {
	s.mu.RLock()
	out := make([]ScopeSetting, 0, len(s.rows))
	for k, sw := range s.rows {
		scope, name, _ := strings.Cut(k, "\x00")
		out = append(out, ScopeSetting{Scope: scope, Name: name, Switches: sw})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope != out[j].Scope {
			return out[i].Scope == ScopeDomain
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Defaults are the switches below every stored setting.
var Defaults = Switches{Opens: ptr(true), Clicks: ptr(true)}

func ptr(b bool) *bool { return &b }

// For resolves the switches of a message from the sending domain
// (the From address's domain) authenticated by API key name ("" for
// campaign mail): the key's setting over the domain's over Defaults.
func (s *Settings) For(key, sendingDomain string) Effective {
	sw := Switches{}
	if key != "" {
		sw = s.Get(ScopeKey, key)
	}
	sw = sw.Over(s.Get(ScopeDomain, sendingDomain)).Over(Defaults)
	return Effective{Opens: *sw.Opens, Clicks: *sw.Clicks, Unsubscribe: sw.Unsubscribe}
}

// Handler serves the settings API (mount it behind the key):
//
//	GET    /api/v1/tracking/settings                         every stored setting and the defaults
//	GET    /api/v1/tracking/settings/effective?key=K&domain=D  what applies to a message
//	GET    /api/v1/tracking/settings/{scope}/{name}           one (scope: domain or key; all null when unset)
//	PUT    /api/v1/tracking/settings/{scope}/{name}           {opens, clicks, unsubscribe}: true, false or null (inherit)
//	DELETE /api/v1/tracking/settings/{scope}/{name}           back to inheriting everything
func (s *Settings) Handler() http.Handler {
	mux := http.NewServeMux()
	scope := func(r *http.Request) string {
		switch r.PathValue("scope") {
		case "domain", "domains":
			return ScopeDomain
		case "key", "keys":
			return ScopeKey
		}
		return r.PathValue("scope")
	}
	answer := func(w http.ResponseWriter, st ScopeSetting, err error) {
		switch {
		case errors.Is(err, ErrInvalidScope), errors.Is(err, ErrInvalidDomain):
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
		case errors.Is(err, ErrUnknownKey):
			httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case err != nil:
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		default:
			httpapi.WriteJSON(w, http.StatusOK, st)
		}
	}
	mux.HandleFunc("GET /api/v1/tracking/settings", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"defaults": Defaults, "settings": s.List()})
	})
	mux.HandleFunc("GET /api/v1/tracking/settings/effective", func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		if d != "" {
			if _, err := checkHost(d); err != nil {
				answer(w, ScopeSetting{}, err)
				return
			}
		}
		httpapi.WriteJSON(w, http.StatusOK, s.For(r.URL.Query().Get("key"), d))
	})
	mux.HandleFunc("GET /api/v1/tracking/settings/{scope}/{name}", func(w http.ResponseWriter, r *http.Request) {
		sc := scope(r)
		name, err := s.normal(r.Context(), sc, r.PathValue("name"))
		answer(w, ScopeSetting{Scope: sc, Name: name, Switches: s.Get(sc, name)}, err)
	})
	mux.HandleFunc("PUT /api/v1/tracking/settings/{scope}/{name}", func(w http.ResponseWriter, r *http.Request) {
		var sw Switches
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sw); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
			return
		}
		st, err := s.Set(r.Context(), scope(r), r.PathValue("name"), sw)
		answer(w, st, err)
	})
	mux.HandleFunc("DELETE /api/v1/tracking/settings/{scope}/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Set(r.Context(), scope(r), r.PathValue("name"), Switches{})
		answer(w, st, err)
	})
	return mux
}
