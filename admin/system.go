package admin

import (
	"net/http"
	"net/http/pprof"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// mountSystem mounts the operational endpoints:
//
//	GET /healthz          public: {"status":"ok"}
//	GET /metrics          Prometheus; access per [metrics] access
//	    /debug/pprof/*    profiling, behind the API key ([http] profiling)
func (r *Router) mountSystem(o Options) {
	r.public("GET /healthz", 0, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}))
	if o.Metrics != nil {
		switch o.MetricsAccess {
		case config.MetricsKey:
			r.private("GET /metrics", 0, o.Metrics)
		case config.MetricsOpen:
			r.public("GET /metrics", 0, o.Metrics)
		default:
			r.loopback("GET /metrics", 0, o.Metrics)
		}
	}
	if o.Profiling {
		r.private("GET /debug/pprof/", 0, http.HandlerFunc(pprof.Index))
		r.private("GET /debug/pprof/cmdline", 0, http.HandlerFunc(pprof.Cmdline))
		r.private("GET /debug/pprof/profile", 0, http.HandlerFunc(pprof.Profile))
		r.private("GET /debug/pprof/symbol", 0, http.HandlerFunc(pprof.Symbol))
		r.private("POST /debug/pprof/symbol", 0, http.HandlerFunc(pprof.Symbol))
		r.private("GET /debug/pprof/trace", 0, http.HandlerFunc(pprof.Trace))
	}
}
