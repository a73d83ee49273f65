package admin

// mountSuppressions mounts policy's suppression list and the public
// one-click unsubscribe endpoint (its signed token authorises it):
//
//	GET    /api/v1/suppressions[?stream=&reason=&after=&limit=]
//	POST   /api/v1/suppressions             {"stream","address","reason"}
//	GET    /api/v1/suppressions/export      CSV
//	POST   /api/v1/suppressions/import      CSV (bounded by policy)
//	GET    /api/v1/suppressions/{stream}/{address}
//	DELETE /api/v1/suppressions/{stream}/{address}
//	GET    /unsubscribe/{token}             public: confirmation page
//	POST   /unsubscribe/{token}             public: RFC 8058 one-click
func (r *Router) mountSuppressions(o Options) {
	if h := o.Policy; h != nil {
		r.private("GET /api/v1/suppressions", 0, h)
		r.private("POST /api/v1/suppressions", 0, h)
		r.private("GET /api/v1/suppressions/export", 0, h)
		r.private("POST /api/v1/suppressions/import", HandlerBounded, h)
		r.private("GET /api/v1/suppressions/{stream}/{address}", 0, h)
		r.private("DELETE /api/v1/suppressions/{stream}/{address}", 0, h)
	}
	if h := o.Unsubscribe; h != nil && o.Preferences == nil {
		r.public("GET /unsubscribe/{token}", 4<<10, h)
		r.public("POST /unsubscribe/{token}", 4<<10, h)
	}
}
