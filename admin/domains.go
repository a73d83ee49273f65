package admin

// mountDomains mounts policy's sending domains:
//
//	GET    /api/v1/domains
//	POST   /api/v1/domains                  {"domain", ...}
//	GET    /api/v1/domains/{domain}
//	POST   /api/v1/domains/{domain}/check   re-check DNS now
//	DELETE /api/v1/domains/{domain}
func (r *Router) mountDomains(o Options) {
	h := o.Policy
	if h == nil {
		return
	}
	r.private("GET /api/v1/domains", 0, h)
	r.private("POST /api/v1/domains", 0, h)
	r.private("GET /api/v1/domains/{domain}", 0, h)
	r.private("POST /api/v1/domains/{domain}/check", 0, h)
	r.private("DELETE /api/v1/domains/{domain}", 0, h)
}
