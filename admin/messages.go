package admin

// mountMessages mounts ingest's injection API:
//
//	POST /api/v1/messages       queue a message (202 once durable)
//	GET  /api/v1/messages/{id}  the message's recipients and states
func (r *Router) mountMessages(o Options) {
	if o.Messages == nil {
		return
	}
	limit := o.MessageMaxBody
	if limit <= 0 {
		limit = 2*(25<<20) + 64<<10
	}
	r.private("POST /api/v1/messages", limit, o.Messages)
	r.private("GET /api/v1/messages/{id}", 0, o.Messages)
}
