package campaign

import (
	"cmp"
	"context"
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
//	POST /api/v1/campaigns/{id}/send      start now (pre-send check first; 422 check_failed with the result); 202
//	POST /api/v1/campaigns/{id}/schedule  {"send_at","time_zone"}: start then (400 invalid_schedule)
//	POST /api/v1/campaigns/{id}/pause     stop after the current page (or hold a scheduled one)
//	POST /api/v1/campaigns/{id}/resume    continue from the durable cursor
//	POST /api/v1/campaigns/{id}/cancel    end it for good
//	POST /api/v1/campaigns/{id}/test      {"to":[addresses]}: a marked test send, not counted
//	POST /api/v1/campaigns/{id}/check     run the pre-send check, store and return it
//	GET  /api/v1/sending-keys         the API keys a campaign may send under: {"keys":[{"name","stream","domains"}]} (no secrets)
//
// A transition the status does not allow is 409 invalid_state. A spec's
// api_key that names no key is 400 unknown_api_key; one whose stream or
// sending domains do not allow the campaign (create, schedule, send,
// resume, test) is 403 stream_not_allowed or domain_not_allowed, the
// answer ingest gives such a key's message.
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
	mux.HandleFunc("GET /api/v1/sending-keys", func(w http.ResponseWriter, r *http.Request) {
		type keyInfo struct {
			Name    string   `json:"name"`
			Stream  string   `json:"stream"`
			Domains []string `json:"domains"`
		}
		out := []keyInfo{}
		if s.opts.Keys != nil {
			keys, err := s.opts.Keys(r.Context())
			if err != nil {
				s.fail(w, err)
				return
			}
			for _, k := range keys {
				out = append(out, keyInfo{Name: k.Name, Stream: cmp.Or(k.Stream, httpapi.DefaultStream), Domains: append([]string{}, k.Domains...)})
			}
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"keys": out})
	})
	mux.HandleFunc("POST /api/v1/campaigns", func(w http.ResponseWriter, r *http.Request) {
		var sp Spec
		if !decodeJSON(w, r, &sp) {
			return
		}
		if name, ok := callerKey(r); ok {
			if sp.APIKey == "" {
				sp.APIKey = name // a database key's campaign sends under that key
			} else if sp.APIKey != name {
				httpapi.WriteError(w, http.StatusForbidden, "key_not_allowed", "the API key "+name+" may create campaigns only under itself, not under "+sp.APIKey)
				return
			}
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
	action := func(name string, f func(ctx context.Context, id string) (Campaign, error)) {
		mux.HandleFunc("POST /api/v1/campaigns/{id}/"+name, func(w http.ResponseWriter, r *http.Request) {
			if (name == "send" || name == "resume") && !s.mayRun(w, r) {
				return
			}
			c, err := f(r.Context(), r.PathValue("id"))
			if err != nil {
				s.fail(w, err)
				return
			}
			code := http.StatusOK
			if name == "send" {
				code = http.StatusAccepted
			}
			httpapi.WriteJSON(w, code, c)
		})
	}
	action("send", s.Send)
	action("pause", s.Pause)
	action("resume", s.Resume)
	action("cancel", s.Cancel)
	mux.HandleFunc("POST /api/v1/campaigns/{id}/schedule", func(w http.ResponseWriter, r *http.Request) {
		var sc Schedule
		if !decodeJSON(w, r, &sc) || !s.mayRun(w, r) {
			return
		}
		c, err := s.Schedule(r.Context(), r.PathValue("id"), sc)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("POST /api/v1/campaigns/{id}/test", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			To []string `json:"to"`
		}
		if !decodeJSON(w, r, &req) || !s.mayRun(w, r) {
			return
		}
		res, err := s.TestSend(r.Context(), r.PathValue("id"), req.To)
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"results": res})
	})
	mux.HandleFunc("POST /api/v1/campaigns/{id}/check", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.Check(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, res)
	})
	return mux
}

// callerKey is the name of the database API key that authenticated r
// (its stream and sending domains bind it), false for a configured key or
// a dashboard session, which may pick any key for a campaign.
func callerKey(r *http.Request) (string, bool) {
	k, ok := httpapi.KeyFrom(r.Context())
	if !ok || !k.StreamOnly {
		return "", false
	}
	return k.Name, true
}

// mayRun reports whether r's caller may send, schedule, resume or test
// the campaign {id}: a database API key only one made under itself (403
// key_not_allowed otherwise; false means the error has been written).
func (s *Service) mayRun(w http.ResponseWriter, r *http.Request) bool {
	name, ok := callerKey(r)
	if !ok {
		return true
	}
	c, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return false
	}
	if c.Spec.APIKey != name {
		httpapi.WriteError(w, http.StatusForbidden, "key_not_allowed", "the API key "+name+" may run only campaigns made under itself")
		return false
	}
	return true
}

// decodeJSON reads r's body into v (unknown fields refused); false
// means the 400 has been written.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return false
	}
	return true
}

func (s *Service) fail(w http.ResponseWriter, err error) {
	var se *SyntaxError
	var ae *audience.Error
	var ce *CheckError
	var ste *StateError
	var sce *scheduleError
	if keyAPIError(w, err) {
		return
	}
	switch {
	case errors.As(err, &ce):
		httpapi.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"error": map[string]string{"code": "check_failed", "message": ce.Error()}, "check": ce.Result})
	case errors.As(err, &ste):
		httpapi.WriteError(w, http.StatusConflict, "invalid_state", err.Error())
	case errors.As(err, &sce):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_schedule", err.Error())
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
