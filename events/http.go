package events

import (
	"net/http"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Handler serves the events API; mount it behind the API-key check:
//
//	GET  /api/v1/webhooks                  webhook state (delivered, failures, lag, last error)
//	GET  /api/v1/stats                     per stream, provider and sending domain over the alarm window
//	POST /api/v1/streams/{stream}/resume   unpause a stream paused by an alarm
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"webhooks": s.Webhooks()})
	})
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /api/v1/streams/{stream}/resume", func(w http.ResponseWriter, r *http.Request) {
		stream := r.PathValue("stream")
		was, err := s.Resume(stream)
		if err != nil {
			s.log.Error("resume stream", "stream", stream, "err", err)
			httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"stream": stream, "was_paused": was, "paused": false})
	})
	return mux
}
