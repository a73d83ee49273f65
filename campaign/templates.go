package campaign

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Template is one version of a stored template. Apps send it by its call
// name (POST /api/v1/messages {"template": CALL_NAME, "variables": {...}});
// editing makes a new version, and a version never changes.
type Template struct {
	CallName string `json:"call_name"`
	Name     string `json:"name"`
	// Type is "transactional" (default) or "marketing".
	Type string `json:"type"`
	Content
	// Variables declares the placeholders a transactional template may
	// use besides email and unsubscribe_url; any other %field% is an
	// error when the template is saved.
	Variables []string  `json:"variables,omitempty"`
	Version   int64     `json:"version"`
	Created   time.Time `json:"created"`
	// Warnings are the HTML problems CheckHTML found (not errors).
	Warnings []string `json:"warnings,omitempty"`
}

var callName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ErrUnknownTemplate is returned for a call name no template has (it
// wraps ingest.ErrUnknownTemplate, so HTTP injection answers 422).
var ErrUnknownTemplate = fmt.Errorf("campaign: no template with this call name: %w", ingest.ErrUnknownTemplate)

// Templates keeps versioned templates in the ESP database.
type Templates struct {
	db *sql.DB
	pg bool

	mu       sync.Mutex
	compiled map[string]*Compiled // call_name@version
}

// NewTemplates creates the template tables if needed.
func NewTemplates(ctx context.Context, db *sql.DB, postgres bool) (*Templates, error) {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS templates (call_name TEXT PRIMARY KEY, version BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS template_versions (
			call_name TEXT NOT NULL,
			version   BIGINT NOT NULL,
			body      TEXT NOT NULL,
			created   BIGINT NOT NULL,
			PRIMARY KEY (call_name, version))`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("campaign: template tables: %w", err)
		}
	}
	return &Templates{db: db, pg: postgres, compiled: map[string]*Compiled{}}, nil
}

func (t *Templates) arg(n int) string { return sqlq.Placeholder(t.pg, n) }

func (tp Template) fields() FieldSet {
	return NewFieldSet(append([]string{"email", "unsubscribe_url"}, tp.Variables...)...)
}

// Save validates tp (call name, type, template against its variables)
// and stores it as the template's next version, which it returns.
func (t *Templates) Save(ctx context.Context, tp Template) (Template, error) {
	if !callName.MatchString(tp.CallName) {
		return Template{}, &invalidError{fmt.Errorf("campaign: call_name %q must be 1-64 of a-z, 0-9, _ . and -", tp.CallName)}
	}
	if tp.Type == "" {
		tp.Type = "transactional"
	}
	if tp.Type != "transactional" && tp.Type != "marketing" {
		return Template{}, &invalidError{fmt.Errorf("campaign: type %q must be transactional or marketing", tp.Type)}
	}
	for _, v := range tp.Variables {
		if !callName.MatchString(v) {
			return Template{}, &invalidError{fmt.Errorf("campaign: variable name %q", v)}
		}
	}
	c, err := Compile(tp.Content, tp.fields())
	if err != nil {
		return Template{}, err
	}
	tp.Warnings = c.Warnings
	tp.Created = time.Now().UTC().Truncate(time.Second)
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return Template{}, fmt.Errorf("campaign: save template: %w", err)
	}
	defer tx.Rollback()
	var last int64
	err = tx.QueryRowContext(ctx, "SELECT version FROM templates WHERE call_name = "+t.arg(1), tp.CallName).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Template{}, fmt.Errorf("campaign: save template: %w", err)
	}
	tp.Version = last + 1
	body, _ := json.Marshal(tp)
	if _, err := tx.ExecContext(ctx, "INSERT INTO template_versions (call_name, version, body, created) VALUES ("+t.arg(1)+", "+t.arg(2)+", "+t.arg(3)+", "+t.arg(4)+")",
		tp.CallName, tp.Version, string(body), tp.Created.Unix()); err != nil {
		return Template{}, fmt.Errorf("campaign: save template: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO templates (call_name, version) VALUES ("+t.arg(1)+", "+t.arg(2)+") ON CONFLICT (call_name) DO UPDATE SET version = excluded.version",
		tp.CallName, tp.Version); err != nil {
		return Template{}, fmt.Errorf("campaign: save template: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Template{}, fmt.Errorf("campaign: save template: %w", err)
	}
	return tp, nil
}

// Get returns version v of a template (0: the latest).
func (t *Templates) Get(ctx context.Context, call string, v int64) (Template, error) {
	q := "SELECT body FROM template_versions WHERE call_name = " + t.arg(1) + " AND version = " + t.arg(2)
	args := []any{call, v}
	if v == 0 {
		q = "SELECT v.body FROM template_versions v JOIN templates t ON t.call_name = v.call_name AND t.version = v.version WHERE v.call_name = " + t.arg(1)
		args = args[:1]
	}
	var body string
	err := t.db.QueryRowContext(ctx, q, args...).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return Template{}, ErrUnknownTemplate
	}
	if err != nil {
		return Template{}, fmt.Errorf("campaign: template: %w", err)
	}
	var tp Template
	if err := json.Unmarshal([]byte(body), &tp); err != nil {
		return Template{}, fmt.Errorf("campaign: corrupt template %s: %w", call, err)
	}
	return tp, nil
}

// Versions lists a template's versions, oldest first.
func (t *Templates) Versions(ctx context.Context, call string) ([]Template, error) {
	rows, err := t.db.QueryContext(ctx, "SELECT body FROM template_versions WHERE call_name = "+t.arg(1)+" ORDER BY version", call)
	if err != nil {
		return nil, fmt.Errorf("campaign: template versions: %w", err)
	}
	out, err := scanTemplates(rows)
	if err == nil && len(out) == 0 {
		return nil, ErrUnknownTemplate
	}
	return out, err
}

// List returns the latest version of every template, by call name (the
// dashboard's template list).
func (t *Templates) List(ctx context.Context) ([]Template, error) {
	rows, err := t.db.QueryContext(ctx, "SELECT v.body FROM template_versions v JOIN templates t ON t.call_name = v.call_name AND t.version = v.version ORDER BY v.call_name")
	if err != nil {
		return nil, fmt.Errorf("campaign: templates: %w", err)
	}
	out, err := scanTemplates(rows)
	if out == nil {
		out = []Template{}
	}
	return out, err
}

// scanTemplates decodes rows of template bodies and closes rows.
func scanTemplates(rows *sql.Rows) ([]Template, error) {
	defer rows.Close()
	var out []Template
	for rows.Next() {
		var body string
		var tp Template
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &tp); err != nil {
			return nil, err
		}
		out = append(out, tp)
	}
	return out, rows.Err()
}

// compiledOf returns tp compiled, cached per version (versions never
// change).
func (t *Templates) compiledOf(tp Template) (*Compiled, error) {
	key := fmt.Sprintf("%s@%d", tp.CallName, tp.Version)
	t.mu.Lock()
	c := t.compiled[key]
	t.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := Compile(tp.Content, tp.fields())
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.compiled[key] = c
	t.mu.Unlock()
	return c, nil
}

// Render renders the latest version of a template with vars (missing
// variables take their %field|fallback% or stay empty).
func (t *Templates) Render(ctx context.Context, call string, vars map[string]string) (Rendered, Template, error) {
	tp, err := t.Get(ctx, call, 0)
	if err != nil {
		return Rendered{}, Template{}, err
	}
	c, err := t.compiledOf(tp)
	if err != nil {
		return Rendered{}, Template{}, err
	}
	return c.Render(Map(vars)), tp, nil
}

// RenderTemplate implements ingest.TemplateRenderer: subject, HTML and
// text of the template's latest version, and its type.
func (t *Templates) RenderTemplate(ctx context.Context, call string, vars map[string]string) (subject, html, text, typ string, err error) {
	r, tp, err := t.Render(ctx, call, vars)
	if err != nil {
		return "", "", "", "", err
	}
	return r.Subject, r.HTML, r.Text, tp.Type, nil
}

// Preview renders version v (0: latest) with vars and builds the full
// MIME message it would send to the sample address.
func (t *Templates) Preview(ctx context.Context, call string, v int64, vars map[string]string) (Rendered, []byte, error) {
	tp, err := t.Get(ctx, call, v)
	if err != nil {
		return Rendered{}, nil, err
	}
	c, err := t.compiledOf(tp)
	if err != nil {
		return Rendered{}, nil, err
	}
	r := c.Render(Map(vars))
	to := vars["email"]
	if to == "" {
		to = "recipient@example.com"
	}
	msg, err := BuildMessage(Envelope{From: &mail.Address{Address: "sender@example.com"}, To: []*mail.Address{{Address: to}}}, r)
	return r, msg, err
}

// Handler serves the template API (mount it behind the API key):
//
//	POST /api/v1/templates                       save a new version {call_name,name,type,subject,preheader,html,text,variables}
//	GET  /api/v1/templates/{call}                the latest version
//	GET  /api/v1/templates/{call}/versions       every version, oldest first
//	GET  /api/v1/templates                       latest version of every template
//	POST /api/v1/templates/{call}/preview        {"variables":{...},"version":N}: rendered parts and the MIME message
func (t *Templates) Handler() http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		var se *SyntaxError
		switch {
		case errors.As(err, &se), errors.Is(err, ErrEmptyTemplate):
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_template", err.Error())
		case errors.As(err, new(*invalidError)):
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
		case errors.Is(err, ErrUnknownTemplate):
			httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		default:
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", "template store failed")
		}
	}
	mux.HandleFunc("POST /api/v1/templates", func(w http.ResponseWriter, r *http.Request) {
		var tp Template
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tp); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
			return
		}
		tp.Version, tp.Created, tp.Warnings = 0, time.Time{}, nil
		saved, err := t.Save(r.Context(), tp)
		if err != nil {
			fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusCreated, saved)
	})
	mux.HandleFunc("GET /api/v1/templates", func(w http.ResponseWriter, r *http.Request) {
		tps, err := t.List(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"templates": tps})
	})
	mux.HandleFunc("GET /api/v1/templates/{call}", func(w http.ResponseWriter, r *http.Request) {
		tp, err := t.Get(r.Context(), r.PathValue("call"), 0)
		if err != nil {
			fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, tp)
	})
	mux.HandleFunc("GET /api/v1/templates/{call}/versions", func(w http.ResponseWriter, r *http.Request) {
		vs, err := t.Versions(r.Context(), r.PathValue("call"))
		if err != nil {
			fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"versions": vs})
	})
	mux.HandleFunc("POST /api/v1/templates/{call}/preview", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Variables map[string]string `json:"variables"`
			Version   int64             `json:"version"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
			return
		}
		rendered, msg, err := t.Preview(r.Context(), r.PathValue("call"), req.Version, req.Variables)
		if err != nil {
			fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"rendered": rendered, "mime": string(msg)})
	})
	return mux
}
