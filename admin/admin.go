package admin

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/petrel-mta/petrel/account"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Options are what New mounts. A nil handler leaves its resource out (a
// separate metrics listener mounts Metrics alone).
type Options struct {
	// Keys authenticate the private routes; nil means no key is valid.
	Keys *httpapi.Keys
	// Accounts are the dashboard's users, sessions and database API keys
	// (auth.go); nil means configured keys only, and no dashboard login.
	Accounts *account.Store
	// UI serves the web dashboard under /ui/ (ui.go).
	UI bool
	// Queue serves /api/v1/queue* and /api/v1/events (queue.go).
	Queue Queue
	// Messages is ingest's injection API (messages.go).
	Messages http.Handler
	// MessageMaxBody bounds an injection request (ingest allows JSON of
	// twice max_message_size).
	MessageMaxBody int64
	// Events is events.Service.Handler: webhooks, stats, stream resume.
	Events http.Handler
	// Policy is policy.Engine.Handler: suppressions and sending domains.
	Policy http.Handler
	// Unsubscribe is policy.Engine.PublicHandler (public).
	Unsubscribe http.Handler
	// Preferences is the preference centre (tracking.Preferences,
	// public); when set it serves /unsubscribe/{token} (page and RFC 8058
	// one-click) in Unsubscribe's place, and /preferences/{token}.
	Preferences http.Handler
	// Tracking is the open pixel and click redirect (tracking.Handler,
	// public).
	Tracking http.Handler
	// TrackingDomains is the tracking-domain registry API
	// (tracking.Domains.Handler).
	TrackingDomains http.Handler
	// TrackingSettings is the open/click/unsubscribe tracking switches
	// per sending domain and API key (tracking.Settings.Handler).
	TrackingSettings http.Handler
	// TrackingStats is the engagement report (tracking.Log.StatsHandler).
	TrackingStats http.Handler
	// Reputation is the blocklist monitor's API (reputation.Checker.Handler).
	Reputation http.Handler
	// Verify is verify.Verifier.Handler.
	Verify http.Handler
	// Audiences is audience.Handler (audiences.go).
	Audiences http.Handler
	// Confirm is the public double opt-in confirmation route
	// (audience.Confirmer.Handler).
	Confirm http.Handler
	// Campaigns is campaign.Service.Handler (audiences.go).
	Campaigns http.Handler
	// Templates is campaign.Templates.Handler (audiences.go).
	Templates http.Handler
	// Flows is flow.Service.Handler (flows.go).
	Flows http.Handler
	// PolicyStatus is the shaper's status (GET /api/v1/policy/status).
	PolicyStatus func() any
	// Metrics is the Prometheus handler; MetricsAccess is [metrics]
	// access ("loopback" when empty).
	Metrics       http.Handler
	MetricsAccess string
	// Profiling mounts /debug/pprof/* behind the API key.
	Profiling bool
	// PublicReadTimeout bounds reading a public route's body; 0 leaves
	// only the server's ReadTimeout.
	PublicReadTimeout time.Duration
	// PublicMaxConnsPerIP caps requests in progress per client IP on the
	// public routes (0 means 16).
	PublicMaxConnsPerIP int
	// Logger; nil discards.
	Logger *slog.Logger
}

// New builds the router of one listener from o: every resource whose
// handler is set, plus /healthz.
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := newRouter(&o)
	r.mountMessages(o)
	r.mountQueue(o)
	r.mountEvents(o)
	r.mountSuppressions(o)
	r.mountDomains(o)
	r.mountVerify(o)
	r.mountPolicy(o)
	r.mountSystem(o)
	r.mountTracking(o)
	r.mountPreferences(o)
	r.mountTrackingStats(o)
	r.mountReputation(o)
	r.mountTrackingDomains(o)
	r.mountTrackingSettings(o)
	r.mountAudiences(o)
	r.mountCampaigns(o)
	r.mountTemplates(o)
	r.mountFlows(o)
	r.mountAccounts(o)
	r.mountUI(o)
	return r
}

// ServerTimeouts returns an http.Server for h with the [http] timeouts.
func ServerTimeouts(h http.Handler, l config.HTTPLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout.Duration,
		ReadTimeout:       l.ReadTimeout.Duration,
		WriteTimeout:      l.WriteTimeout.Duration,
		IdleTimeout:       l.IdleTimeout.Duration,
		MaxHeaderBytes:    64 << 10,
	}
}
