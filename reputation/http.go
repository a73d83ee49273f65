package reputation

import (
	"net/http"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Report is the stats API's answer: every (target, list) result, listed
// ones first, and how many are listed.
type Report struct {
	Listed  int      `json:"listed"`
	Results []Result `json:"results"`
}

func report(rs []Result) Report {
	rep := Report{Results: rs}
	if rep.Results == nil {
		rep.Results = []Result{}
	}
	for _, r := range rs {
		if r.Listed {
			rep.Listed++
		}
	}
	return rep
}

// Handler serves the checker's API (admin mounts it behind the key):
//
//	GET  /api/v1/stats/reputation   the latest results (Report)
//	POST /api/v1/reputation/check   check now and answer the new results
func (c *Checker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/stats/reputation", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, report(c.Results()))
	})
	mux.HandleFunc("POST /api/v1/reputation/check", func(w http.ResponseWriter, r *http.Request) {
		rs, err := c.Check(r.Context())
		if err != nil && rs == nil {
			httpapi.WriteError(w, http.StatusServiceUnavailable, "check_failed", err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, report(rs))
	})
	return mux
}
