package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/queue"
)

// Queue is the part of *queue.Queue the admin API uses.
type Queue interface {
	List(ctx context.Context, after string, limit int) ([]queue.RcptInfo, string, error)
	Flush(ctx context.Context) (int, error)
	FlushDomain(ctx context.Context, domain string) (int, error)
	Hold(ctx context.Context, msgID string) (int, error)
	Release(ctx context.Context, msgID string) (int, error)
	Delete(ctx context.Context, msgID string) (int, error)
	Events(ctx context.Context, f queue.EventFilter) ([]queue.Event, error)
	Stats() queue.Stats
	Message(msgID string) (*queue.MessageInfo, error)
}

// mountQueue mounts the operator's queue API and the event log:
//
//	GET  /api/v1/queue?after=&limit=      live recipients, paged
//	GET  /api/v1/queue/stats              counts by state
//	POST /api/v1/queue/flush   {}|{"domain"}  retry deferred now (of one domain)
//	POST /api/v1/queue/hold    {"id"}|{"all":true}
//	POST /api/v1/queue/release {"id"}|{"all":true}
//	POST /api/v1/queue/delete  {"id"}
//	GET  /api/v1/events?after=&since=&type=&recipient=&campaign=&limit=
//	GET  /api/v1/messages/{id}            a message's recipients and states
func (r *Router) mountQueue(o Options) {
	if o.Queue == nil {
		return
	}
	a := &api{q: o.Queue, log: o.Logger}
	r.private("GET /api/v1/queue", 0, http.HandlerFunc(a.list))
	r.private("GET /api/v1/queue/stats", 0, http.HandlerFunc(a.stats))
	r.private("POST /api/v1/queue/{action}", 4096, http.HandlerFunc(a.action))
	r.private("GET /api/v1/events", 0, http.HandlerFunc(a.events))
	r.private("GET /api/v1/messages/{id}", 0, http.HandlerFunc(a.message))
}

// message answers a message's recipients, states and last replies (a
// tombstone answers for the event retention after the message is done).
func (a *api) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	mi, err := a.q.Message(id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "no message with id "+id)
	case err != nil:
		a.fail(w, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, mi)
	}
}

type api struct {
	q   Queue
	log *slog.Logger
}

func limitParam(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, errors.New("limit must be a positive integer")
	}
	return min(n, max), nil
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 1000, 10000)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	rs, next, err := a.q.List(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	if rs == nil {
		rs = []queue.RcptInfo{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"recipients": rs, "next": next})
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, a.q.Stats())
}

type actionRequest struct {
	ID     string `json:"id"`
	All    bool   `json:"all"`
	Domain string `json:"domain"`
}

func (a *api) action(w http.ResponseWriter, r *http.Request) {
	var req actionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return
	}
	action := r.PathValue("action")
	if req.ID != "" && req.All {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", `give either "id" or "all", not both`)
		return
	}
	ctx := r.Context()
	var n int
	var err error
	switch action {
	case "flush":
		if req.ID != "" || req.All {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", `flush takes {} or {"domain": "..."}`)
			return
		}
		if req.Domain != "" {
			n, err = a.q.FlushDomain(ctx, req.Domain)
		} else {
			n, err = a.q.Flush(ctx)
		}
	case "hold", "release":
		if req.ID == "" && !req.All {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", `"id" or "all": true is required`)
			return
		}
		if action == "hold" {
			n, err = a.q.Hold(ctx, req.ID)
		} else {
			n, err = a.q.Release(ctx, req.ID)
		}
	case "delete":
		if req.ID == "" {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", `"id" is required`)
			return
		}
		n, err = a.q.Delete(ctx, req.ID)
	default:
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "unknown queue action "+strconv.Quote(action))
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("queue action", "action", action, "id", req.ID, "all", req.All, "domain", req.Domain, "affected", n)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"affected": n})
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	f := queue.EventFilter{After: q.Get("after"), Type: q.Get("type"), Recipient: q.Get("recipient"), Campaign: q.Get("campaign"), Limit: limit}
	if s := q.Get("since"); s != "" {
		t, err := parseSince(s)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		f.Since = t
	}
	evs, err := a.q.Events(r.Context(), f)
	if err != nil {
		a.fail(w, err)
		return
	}
	if evs == nil {
		evs = []queue.Event{}
	}
	next := ""
	if len(evs) == limit {
		next = evs[len(evs)-1].Seq
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next})
}

// parseSince accepts RFC 3339 times, Unix seconds, or a Go duration
// meaning "that long ago" ("1h").
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, errors.New(`since must be RFC 3339, Unix seconds or a duration like "1h"`)
}

func (a *api) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, queue.ErrBadCursor):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, queue.ErrClosed):
		httpapi.WriteError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	default:
		a.log.Error("admin", "err", err)
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
