package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/BurntSushi/toml"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// ParseTOML reads one flow from a TOML file's content (the same fields as
// the JSON API; steps as [[steps]] tables).
func ParseTOML(data []byte) (Flow, error) {
	var f Flow
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return Flow{}, fmt.Errorf("flow: toml: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return Flow{}, fmt.Errorf("flow: toml: unknown key %s", und[0])
	}
	return f, nil
}

// Handler serves the flow API (mount it behind the API key):
//
//	GET    /api/v1/flows                   every flow (current versions)
//	POST   /api/v1/flows                   save a flow (JSON, or TOML with Content-Type application/toml): a new version; 201
//	GET    /api/v1/flows/{id}              the current version
//	PUT    /api/v1/flows/{id}              save a new version (id must match)
//	DELETE /api/v1/flows/{id}              delete (runs in it end)
//	GET    /api/v1/flows/{id}/versions     every version, oldest first
//	GET    /api/v1/flows/{id}/stats        counts per flow and step
//	GET    /api/v1/flows/journey?email=E   a contact's journey
//	POST   /api/v1/events/custom           {"contact","name","properties","audience","create"}: 202; unknown contact 404
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	save := func(w http.ResponseWriter, r *http.Request, id string) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_body", err.Error())
			return
		}
		var f Flow
		if ct := r.Header.Get("Content-Type"); ct == "application/toml" || ct == "text/toml" {
			if f, err = ParseTOML(body); err != nil {
				httpapi.WriteError(w, http.StatusBadRequest, "invalid_toml", err.Error())
				return
			}
		} else if err := strictJSON(body, &f); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
			return
		}
		if id != "" && f.ID != id {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "the body's id is not the path's")
			return
		}
		f.Version, f.Created = 0, f.Created.UTC()
		saved, err := s.Save(r.Context(), f)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusCreated, saved)
	}
	mux.HandleFunc("GET /api/v1/flows", func(w http.ResponseWriter, r *http.Request) {
		fs, err := s.List(r.Context())
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"flows": fs})
	})
	mux.HandleFunc("POST /api/v1/flows", func(w http.ResponseWriter, r *http.Request) { save(w, r, "") })
	mux.HandleFunc("PUT /api/v1/flows/{id}", func(w http.ResponseWriter, r *http.Request) { save(w, r, r.PathValue("id")) })
	mux.HandleFunc("GET /api/v1/flows/{id}", func(w http.ResponseWriter, r *http.Request) {
		f, err := s.Get(r.Context(), r.PathValue("id"), 0)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("DELETE /api/v1/flows/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Delete(r.Context(), r.PathValue("id")); err != nil {
			s.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/v1/flows/{id}/versions", func(w http.ResponseWriter, r *http.Request) {
		vs, err := s.Versions(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"versions": vs})
	})
	mux.HandleFunc("GET /api/v1/flows/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Stats(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /api/v1/flows/journey", func(w http.ResponseWriter, r *http.Request) {
		limit := 1000
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 100000 {
				httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "limit must be 1-100000")
				return
			}
			limit = n
		}
		js, err := s.Journey(r.Context(), r.URL.Query().Get("email"), limit)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"journey": js})
	})
	mux.HandleFunc("POST /api/v1/events/custom", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_body", err.Error())
			return
		}
		var ev CustomEvent
		if err := strictJSON(body, &ev); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
			return
		}
		ids, err := s.PostEvent(r.Context(), ev)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"contacts": ids})
	})
	return mux
}

func strictJSON(body []byte, v any) error {
	if len(body) == 0 {
		return errors.New("empty body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func (s *Service) fail(w http.ResponseWriter, err error) {
	var ae *audience.Error
	switch {
	case isInvalid(err):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_flow", err.Error())
	case errors.Is(err, ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrUnknownContact):
		httpapi.WriteError(w, http.StatusNotFound, "unknown_contact", err.Error()+` (post "create": true with an "audience" to add it)`)
	case errors.As(err, &ae):
		status := http.StatusBadRequest
		if ae.Kind == audience.NotFound {
			status = http.StatusNotFound
		}
		httpapi.WriteError(w, status, ae.Code, ae.Message)
	default:
		s.log.Error("flow API", "err", err)
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "flow store failed")
	}
}
