package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/petrel-mta/petrel/account"
	"github.com/petrel-mta/petrel/admin"
	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/unsub"
	"github.com/petrel-mta/petrel/tracking"
)

// trackingKeyFile holds the HMAC secret of tracking tokens (hex, 0600),
// generated on first start.
const trackingKeyFile = "tracking.key"

// trackingPart is the open/click tracker: its token signer, the public
// handler and the engagement log (forwarded into the event log).
type trackingPart struct {
	signer  *tracking.Signer
	log     *tracking.Log
	handler *tracking.Handler
}

func openTracking(dataDir string, log *slog.Logger) (*trackingPart, error) {
	secret, err := unsub.LoadOrCreateSecret(filepath.Join(dataDir, trackingKeyFile))
	if err != nil {
		return nil, fmt.Errorf("tracking: %w", err)
	}
	signer, err := tracking.NewSigner(secret)
	if err != nil {
		return nil, fmt.Errorf("tracking: %s: %w", trackingKeyFile, err)
	}
	l, err := tracking.OpenLog(filepath.Join(dataDir, "engagement"), tracking.LogOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	return &trackingPart{signer: signer, log: l, handler: &tracking.Handler{Signer: signer, Recorder: l}}, nil
}

// preferences is the public preference centre over the unsubscribe
// tokens, the suppression list and the ESP's contacts.
func preferences(pol *policy.Engine, st *audience.Store, log *slog.Logger) http.Handler {
	p := &tracking.Preferences{
		Parse: pol.ParseUnsubscribeToken,
		Suppress: func(stream, rcpt, via string) error {
			_, err := pol.Unsubscribe(stream, rcpt, via)
			return err
		},
		Store:  st,
		Logger: log.With("component", "preferences"),
	}
	return p.Handler()
}

// openTrackingDomains opens the tracking-domain registry on the ESP
// database and ensures the [[tracking.domain]] entries are in it.
func openTrackingDomains(ctx context.Context, cfg *config.Config, st *audience.Store, res *dns.Resolver) (*tracking.Domains, error) {
	target := cfg.Tracking.CNAMETarget
	if target == "" {
		target = cfg.Hostname
	}
	doms, err := tracking.NewDomains(ctx, st.DB(), st.Postgres(), res, target)
	if err != nil {
		return nil, err
	}
	for _, td := range cfg.Tracking.Domains {
		if err := doms.Ensure(ctx, tracking.Domain{Host: td.Host, SendingDomain: td.SendingDomain, HTTPS: td.HTTPS}); err != nil {
			return nil, fmt.Errorf("[[tracking.domain]] %s: %w", td.Host, err)
		}
	}
	return doms, nil
}

// trackingTLS returns the [tracking] https_listen listener (TLS, the
// operator's cert_file or ACME certificates by SNI for verified HTTPS
// tracking domains), its certificate manager (o: events, metrics, log)
// and its server, which serves only the public routes (pixel, redirect,
// unsubscribe and preference pages) through the admin router; nil when
// https_listen is not set.
func trackingTLS(cfg *config.Config, keys *httpapi.Keys, doms *tracking.Domains, trk, prefs http.Handler, o tracking.CertOptions) (net.Listener, *http.Server, *tracking.CertManager, error) {
	tc := cfg.Tracking
	if tc.HTTPSListen == "" {
		return nil, nil, nil, nil
	}
	client := http.DefaultClient
	if tc.ACMECA != "" {
		pem, err := os.ReadFile(tc.ACMECA)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("[tracking] acme_ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("[tracking] acme_ca %s: no PEM certificate", tc.ACMECA)
		}
		client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	o.CacheDir, o.DirectoryURL, o.HTTPClient, o.Email = filepath.Join(cfg.DataDir, "acme"), tc.ACMEDirectory, client, tc.ACMEEmail
	o.Warning = tc.CertExpiryWarning.Duration
	o.Files = map[string]tracking.CertFiles{}
	for _, d := range tc.Domains {
		if d.CertFile != "" {
			o.Files[d.Host] = tracking.CertFiles{Cert: d.CertFile, Key: d.KeyFile}
		}
	}
	cm, err := tracking.NewCertManager(doms, o)
	if err != nil {
		return nil, nil, nil, err
	}
	ln, err := net.Listen("tcp", tc.HTTPSListen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("[tracking] https_listen: %w", err)
	}
	srv := admin.ServerTimeouts(admin.New(admin.Options{Keys: keys, Tracking: trk, Preferences: prefs,
		PublicReadTimeout: cfg.HTTP.PublicReadTimeout.Duration, PublicMaxConnsPerIP: cfg.HTTP.PublicMaxConnsPerIP}), cfg.HTTP.HTTPLimits)
	srv.TLSConfig = cm.TLSConfig()
	return tls.NewListener(ln, srv.TLSConfig), srv, cm, nil
}

// checkTrackingDomains checks every tracking domain's CNAME at start and
// then every interval, until ctx ends.
func checkTrackingDomains(ctx context.Context, doms *tracking.Domains, interval time.Duration, log *slog.Logger) {
	for {
		if err := doms.CheckAll(ctx); err != nil && ctx.Err() == nil {
			log.Warn("tracking domains: check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// trackingBase is where tracked links and pixels of mail from a From
// domain point: its verified tracking domain, else the public base URL
// ([sending] unsubscribe_url); "" (untracked) with neither.
func trackingBase(cfg *config.Config, doms *tracking.Domains) func(ctx context.Context, fromDomain string) string {
	base := cfg.Sending.UnsubscribeURL
	return func(ctx context.Context, fromDomain string) string {
		if u, ok, err := doms.BaseURL(ctx, fromDomain); err == nil && ok {
			return u
		}
		return base
	}
}

// openTrackingSettings opens the tracking switches per sending domain
// and API key; a key setting must name a configured [[http.api_keys]]
// key or a database key.
func openTrackingSettings(ctx context.Context, keys *httpapi.Keys, st *audience.Store, accts *account.Store) (*tracking.Settings, error) {
	set, err := tracking.NewSettings(ctx, st.DB(), st.Postgres())
	if err != nil {
		return nil, err
	}
	set.KnownKey = func(ctx context.Context, name string) bool {
		if slices.Contains(keys.Names(), name) {
			return true
		}
		dbKeys, err := accts.Keys(ctx)
		if err != nil {
			return false
		}
		for _, k := range dbKeys {
			if k.Name == name {
				return true
			}
		}
		return false
	}
	return set, nil
}
