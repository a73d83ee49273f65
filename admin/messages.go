package admin

// mountMessages mounts ingest's injection API (GET /api/v1/messages/{id}
// is the queue's, in queue.go):
//
//	POST /api/v1/messages       queue a message (202 once durable)
func (r *Router) mountMessages(o Options) {
	if o.Messages == nil {
		return
	}
	limit := o.MessageMaxBody
	if limit <= 0 {
		limit = 2*(25<<20) + 64<<10
	}
	r.private("POST /api/v1/messages", limit, o.Messages)
}
