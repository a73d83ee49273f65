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
