package admin

// mountReputation mounts the blocklist monitor (reputation.Checker.Handler)
// behind the key:
//
//	GET  /api/v1/stats/reputation   latest result per (target, list), listed first
//	POST /api/v1/reputation/check   check every target now (petrelctl reputation check)
func (r *Router) mountReputation(o Options) {
	if o.Reputation == nil {
		return
	}
	r.private("GET /api/v1/stats/reputation", 0, o.Reputation)
	r.private("POST /api/v1/reputation/check", 0, o.Reputation)
}
