package campaign

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Handler serves the campaign API (mount it behind the API key):
//
//	GET  /api/v1/campaigns            newest first: ?status=&limit=&after= → {"campaigns":[Summary], "next": cursor}
//	POST /api/v1/campaigns            create a draft (Spec); 400 names a template error's position
//	GET  /api/v1/campaigns/{id}       spec, status (draft, sending, sent, failed) and progress
//	POST /api/v1/campaigns/{id}/send  start (or resume) the send; 202
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/campaigns", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 0
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", "limit must be a positive integer")
				return
			}
			limit = n
		}
		list, next, err := s.List(r.Context(), ListOptions{Status: q.Get("status"), After: q.Get("after"), Limit: limit})
		if err != nil {
			s.fail(w, err)
			return
		}
		out := map[string]any{"campaigns": list}
		if next != "" {
			out["next"] = next
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /api/v1/campaigns", func(w http.ResponseWriter, r *http.Request) {
		var sp Spec
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sp); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
			return
		}
		c, err := s.Create(r.Context(), sp)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusCreated, c)
	})
	mux.HandleFunc("GET /api/v1/campaigns/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("POST /api/v1/campaigns/{id}/send", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Send(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, c)
	})
	return mux
}

func (s *Service) fail(w http.ResponseWriter, err error) {
	var se *SyntaxError
	var ae *audience.Error
	switch {
	case errors.As(err, &se):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_template", err.Error())
	case errors.Is(err, ErrEmptyTemplate):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_template", err.Error())
	case errors.Is(err, ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrExists):
		httpapi.WriteError(w, http.StatusConflict, "campaign_exists", err.Error())
	case errors.As(err, &ae):
		status := http.StatusBadRequest
		switch ae.Kind {
		case audience.NotFound:
			status = http.StatusNotFound
		case audience.Conflict:
			status = http.StatusConflict
		}
		httpapi.WriteError(w, status, ae.Code, ae.Message)
	case errors.As(err, new(*invalidError)):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
	default:
		s.log.Error("campaign API", "err", err)
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "campaign store failed")
	}
}
