package admin

// mountVerify mounts verify's address verification:
//
//	GET  /api/v1/verify?address=A[&quick=1]
//	POST /api/v1/verify/jobs                 CSV or JSON list (bounded by verify)
//	GET  /api/v1/verify/jobs
//	GET  /api/v1/verify/jobs/{id}
//	GET  /api/v1/verify/jobs/{id}/results
func (r *Router) mountVerify(o Options) {
	h := o.Verify
	if h == nil {
		return
	}
	r.private("GET /api/v1/verify", 0, h)
	r.private("POST /api/v1/verify/jobs", HandlerBounded, h)
	r.private("GET /api/v1/verify/jobs", 0, h)
	r.private("GET /api/v1/verify/jobs/{id}", 0, h)
	r.private("GET /api/v1/verify/jobs/{id}/results", 0, h)
}
