package admin

// mountTracking mounts the public tracking endpoints (tracking.Handler):
//
//	GET|HEAD /t/o/{token}   open pixel (43-byte GIF, no-store)
//	GET|HEAD /t/c/{token}   click redirect to the link sealed in the token
//
// A token that does not verify is a 404; no key is involved, the HMAC
// token is the credential.
func (r *Router) mountTracking(o Options) {
	if o.Tracking == nil {
		return
	}
	r.public("GET /t/o/{token}", 0, o.Tracking)
	r.public("GET /t/c/{token}", 0, o.Tracking)
}

// mountTrackingStats mounts the engagement report behind the key:
//
//	GET /api/v1/stats/campaigns/{campaign}   opens, clicks (human, machine, unique), CTOR, per link, hourly
func (r *Router) mountTrackingStats(o Options) {
	if o.TrackingStats == nil {
		return
	}
	r.private("GET /api/v1/stats/campaigns/{campaign}", 0, o.TrackingStats)
}
