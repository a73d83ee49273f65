package admin

// mountEvents mounts events' API (the event log itself is the queue's:
// queue.go):
//
//	GET  /api/v1/webhooks                  webhook state
//	GET  /api/v1/stats                     per stream, provider and sending domain
//	POST /api/v1/streams/{stream}/resume   unpause a stream paused by an alarm
func (r *Router) mountEvents(o Options) {
	h := o.Events
	if h == nil {
		return
	}
	r.private("GET /api/v1/webhooks", 0, h)
	r.private("GET /api/v1/stats", 0, h)
	r.private("POST /api/v1/streams/{stream}/resume", 0, h)
}
