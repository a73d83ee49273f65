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

// mountPreferences mounts the preference centre (tracking.Preferences;
// the List-Unsubscribe token authorises, no cookie):
//
//	GET  /unsubscribe/{token}   preference page (lists, leave one or all)
//	POST /unsubscribe/{token}   RFC 8058 one-click: leave everything
//	GET  /preferences/{token}   preference page
//	POST /preferences/{token}   the page's form (same-origin browsers only)
func (r *Router) mountPreferences(o Options) {
	if o.Preferences == nil {
		return
	}
	r.public("GET /unsubscribe/{token}", 4<<10, o.Preferences)
	r.public("POST /unsubscribe/{token}", 4<<10, o.Preferences)
	r.public("GET /preferences/{token}", 4<<10, o.Preferences)
	r.public("POST /preferences/{token}", 4<<10, o.Preferences)
}

// mountTrackingStats mounts the engagement report behind the key:
//
//	GET /api/v1/stats/campaigns/{campaign}[?by=provider|type]   delivered, bounced, complained, opens,
//	                                                            clicks (human, machine, unique), rates, per link, hourly
//	GET /api/v1/stats/providers                                 all campaigns by mailbox provider
//	GET /api/v1/stats/types                                     all campaigns by type (stream)
//	GET /api/v1/stats/segments?audience=ID&segment=EXPR         campaigns sent to a segment, summed
func (r *Router) mountTrackingStats(o Options) {
	if o.TrackingStats == nil {
		return
	}
	r.private("GET /api/v1/stats/campaigns/{campaign}", 0, o.TrackingStats)
	r.private("GET /api/v1/stats/providers", 0, o.TrackingStats)
	r.private("GET /api/v1/stats/types", 0, o.TrackingStats)
	r.private("GET /api/v1/stats/segments", 0, o.TrackingStats)
}

// mountTrackingDomains mounts the custom tracking domains behind the key:
//
//	GET    /api/v1/tracking/domains                 list (with certificate status)
//	POST   /api/v1/tracking/domains                 add {host, sending_domain, target?, https?}
//	GET    /api/v1/tracking/domains/{host}          one
//	POST   /api/v1/tracking/domains/{host}/check    check its CNAME now
//	DELETE /api/v1/tracking/domains/{host}          remove
func (r *Router) mountTrackingDomains(o Options) {
	if o.TrackingDomains == nil {
		return
	}
	r.private("GET /api/v1/tracking/domains", 0, o.TrackingDomains)
	r.private("POST /api/v1/tracking/domains", 0, o.TrackingDomains)
	r.private("GET /api/v1/tracking/domains/{host}", 0, o.TrackingDomains)
	r.private("POST /api/v1/tracking/domains/{host}/check", 0, o.TrackingDomains)
	r.private("DELETE /api/v1/tracking/domains/{host}", 0, o.TrackingDomains)
}

// mountTrackingSettings mounts the tracking switches behind the key:
//
//	GET    /api/v1/tracking/settings                           every stored setting and the defaults
//	GET    /api/v1/tracking/settings/effective?key=K&domain=D  what applies to a message
//	GET    /api/v1/tracking/settings/{scope}/{name}            one (scope: domain or key)
//	PUT    /api/v1/tracking/settings/{scope}/{name}            {opens, clicks, unsubscribe}: true, false or null
//	DELETE /api/v1/tracking/settings/{scope}/{name}            inherit everything again
func (r *Router) mountTrackingSettings(o Options) {
	if o.TrackingSettings == nil {
		return
	}
	r.private("GET /api/v1/tracking/settings", 0, o.TrackingSettings)
	r.private("GET /api/v1/tracking/settings/effective", 0, o.TrackingSettings)
	r.private("GET /api/v1/tracking/settings/{scope}/{name}", 0, o.TrackingSettings)
	r.private("PUT /api/v1/tracking/settings/{scope}/{name}", 4<<10, o.TrackingSettings)
	r.private("DELETE /api/v1/tracking/settings/{scope}/{name}", 0, o.TrackingSettings)
}
