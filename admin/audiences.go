package admin

// mountAudiences mounts the ESP audience API (audience.Handler; its doc
// comment lists every route): audiences, fields, contacts, tags,
// segments, imports, consent, export and erasure, all behind the key.
// CSV uploads bound their own body ([esp] max_upload_bytes).
func (r *Router) mountAudiences(o Options) {
	h := o.Audiences
	if h == nil {
		return
	}
	const jsonBody = 16 << 20
	r.private("GET /api/v1/audiences", 0, h)
	r.private("POST /api/v1/audiences", jsonBody, h)
	r.private("POST /api/v1/audiences/{aid}/imports", HandlerBounded, h)
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		r.private(m+" /api/v1/audiences/", jsonBody, h)
	}
	r.private("GET /api/v1/imports/", 0, h)
	if o.Confirm != nil {
		// Public: the signed, expiring token is the credential; a GET only
		// shows the form (link scanners follow GETs).
		r.public("GET /confirm/{token}", 0, o.Confirm)
		r.public("POST /confirm/{token}", 4<<10, o.Confirm)
	}
}

// mountCampaigns mounts the campaign API (campaign.Service.Handler).
func (r *Router) mountCampaigns(o Options) {
	h := o.Campaigns
	if h == nil {
		return
	}
	r.private("GET /api/v1/campaigns", 0, h)
	r.private("POST /api/v1/campaigns", 16<<20, h)
	r.private("GET /api/v1/campaigns/{id}", 0, h)
	r.private("GET /api/v1/sending-keys", 0, h)
	for _, action := range []string{"send", "schedule", "pause", "resume", "cancel", "test", "check"} {
		r.private("POST /api/v1/campaigns/{id}/"+action, 0, h)
	}
}

// mountTemplates mounts the template API (campaign.Templates.Handler).
func (r *Router) mountTemplates(o Options) {
	h := o.Templates
	if h == nil {
		return
	}
	r.private("GET /api/v1/templates", 0, h)
	r.private("POST /api/v1/templates", 16<<20, h)
	r.private("GET /api/v1/templates/{call}", 0, h)
	r.private("GET /api/v1/templates/{call}/versions", 0, h)
	r.private("POST /api/v1/templates/{call}/preview", 0, h)
}
