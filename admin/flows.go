package admin

// mountFlows mounts the automation flow API (flow.Service.Handler; its
// doc comment lists every route) and the custom events apps post, all
// behind the key.
func (r *Router) mountFlows(o Options) {
	h := o.Flows
	if h == nil {
		return
	}
	const body = 4 << 20
	r.private("GET /api/v1/flows", 0, h)
	r.private("POST /api/v1/flows", body, h)
	r.private("GET /api/v1/flows/journey", 0, h)
	r.private("GET /api/v1/flows/{id}", 0, h)
	r.private("PUT /api/v1/flows/{id}", body, h)
	r.private("DELETE /api/v1/flows/{id}", 0, h)
	r.private("GET /api/v1/flows/{id}/versions", 0, h)
	r.private("GET /api/v1/flows/{id}/stats", 0, h)
	r.private("POST /api/v1/events/custom", 128<<10, h)
}
