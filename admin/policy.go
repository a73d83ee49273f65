package admin

import (
	"net/http"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// mountPolicy mounts the shaper's state:
//
//	GET /api/v1/policy/status   limits, actions, warm-up, paused streams
func (r *Router) mountPolicy(o Options) {
	if o.PolicyStatus == nil {
		return
	}
	r.private("GET /api/v1/policy/status", 0, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, o.PolicyStatus())
	}))
}
