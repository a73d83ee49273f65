package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/petrel-mta/petrel/admin"
	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/delivery"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/netx"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/queue"
	"github.com/petrel-mta/petrel/tracking"
	"github.com/petrel-mta/petrel/verify"
)

// daemon holds the running parts; it only wires them together.
type daemon struct {
	cfg     *config.Config
	cfgPath string
	log     *slog.Logger

	tracking    *trackingPart
	campaigns   *campaign.Service
	esp         *audience.Store
	campaignCtx context.Context
	q           *queue.Queue
	rules       *bounce.Rules
	shaper      *shaping.Shaper
	policy      *policy.Engine
	smtp        *ingest.SMTPServer
	httpSrv     *http.Server
	// metricsSrv serves [metrics] listen when it is set.
	metricsSrv *http.Server
	// trackSrv serves [tracking] https_listen when it is set.
	trackSrv *http.Server
	// router is the [http] listener's route table.
	router   *admin.Router
	cancel   context.CancelFunc
	delivery sync.WaitGroup
	events   eventsPart
	closers  []func() error
}

func start(ctx context.Context, cfg *config.Config, cfgPath string, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, cfgPath: cfgPath, log: log}
	var listeners []net.Listener
	defer func() {
		if err != nil { // undo what was opened, newest first
			for _, ln := range listeners {
				ln.Close()
			}
			d.closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, unlock)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rules := bounce.DefaultRules()
	if cfg.Bounce.RulesFile != "" {
		r, err := bounce.LoadRules(cfg.Bounce.RulesFile)
		if err != nil {
			return nil, fmt.Errorf("[bounce] rules_file: %w", err)
		}
		rules = r
	}
	d.rules = rules

	dsn := bounce.NewDSNHook(cfg.Hostname, cfg.Bounce.Domain, nil, log)
	q, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queue.Options{
		RetrySchedule:  cfg.Delivery.Retries(),
		MaxLifetime:    cfg.Delivery.MaxQueueLifetime.Duration,
		EventRetention: cfg.Events.Retention.Duration,
		MinFreeSpace:   cfg.Queue.MinFreeSpace.Bytes,
		MinFreePercent: cfg.Queue.MinFreeSpace.Percent,
		OnEvent:        d.events.onEvent,
		OnFailure:      dsn.OnFailure,
		Logger:         log.With("component", "queue"),
	})
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	d.q = q
	d.closers = append(d.closers, q.Close)
	if err := q.RegisterMetrics(reg); err != nil {
		return nil, fmt.Errorf("queue metrics: %w", err)
	}

	sh, err := shaping.New(cfg.Shaping, cfg.Hostname, log.With("component", "shaping"), reg)
	if err != nil {
		return nil, fmt.Errorf("shaping: %w", err)
	}
	d.shaper = sh
	pol, err := policy.New(policy.Options{
		Config:   cfg,
		Logger:   log,
		Registry: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	d.policy = pol
	// Closed after the events service, whose rules loop writes
	// suppressions into it.
	d.closers = append(d.closers, pol.Close)
	// Suppression changes committed before a crash get their events
	// before anything new is accepted (ARCHITECTURE.md invariant 9).
	if _, err := events.DrainSuppressions(ctx, pol.Suppressions(), q); err != nil {
		return nil, fmt.Errorf("suppression events: %w", err)
	}
	if err := d.events.setup(d, q, pol, sh, reg); err != nil {
		return nil, err
	}
	if w := policy.DomainStatusWarning(cfg); w != "" {
		log.Warn(w)
	}

	res, err := dns.NewResolver(cfg.DNS.Resolver, cfg.DNS.Timeout.Duration, log.With("component", "dns"))
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	dl, err := delivery.New(delivery.Options{
		Hostname:   cfg.Hostname,
		Config:     cfg.Delivery,
		Resolver:   res,
		Transport:  cfg.TransportFor,
		Shaper:     sh,
		Suppressor: pol,
		Classify:   rules.ClassifyReply,
		ReturnPath: bounce.ReturnPath(cfg.Bounce.Domain, []byte(cfg.Bounce.Secret)),
		Logger:     log.With("component", "delivery"),
		Registry:   reg,
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	d.closers = append(d.closers, dl.Close)

	ver, err := verify.New(verify.Options{
		Config:   cfg.Verify,
		Resolver: res,
		SMTPPort: cfg.Delivery.SMTPPort,
		Hostname: cfg.Hostname,
		DataDir:  cfg.DataDir,
		Shaper:   sh,
		Logger:   log.With("component", "verify"),
		Registry: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	d.closers = append(d.closers, ver.Close)
	var rcptCheck ingest.RecipientChecker
	if cfg.Verify.AtIngest {
		rcptCheck = ver
	}

	sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: cfg.Hostname, Spool: q, Policy: pol,
		Recipients: rcptCheck, HopCountLimit: cfg.SMTP.HopCountLimit, Logger: log, Registry: reg})
	dsn.Use(sub)
	smtpSrv, err := ingest.NewSMTPServer(ingest.Options{
		Hostname:  cfg.Hostname,
		SMTP:      cfg.SMTP,
		Submitter: sub,
		Logger:    log, // ingest names its component
		Registry:  reg,
	})
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	d.smtp = smtpSrv

	keys, keyPath, err := httpapi.KeysFor(cfg.HTTP.APIKeys, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if keyPath != "" {
		log.Info("no [[http.api_keys]] configured: using the local key in "+keyPath+" (petrelctl reads it from its -data-dir)", "path", keyPath)
	}
	espStore, audH, err := d.openAudiences(ctx, ver, log.With("component", "audience"))
	if err != nil {
		return nil, err
	}
	camps, err := d.openCampaigns(ctx, espStore, sub, log.With("component", "campaign"))
	if err != nil {
		return nil, err
	}
	d.campaigns = camps
	d.esp = espStore
	confirmer, err := d.openConfirmer(ctx, espStore, sub, log.With("component", "audience"))
	if err != nil {
		return nil, err
	}
	tpls, err := campaign.NewTemplates(ctx, espStore.DB(), espStore.Postgres())
	if err != nil {
		return nil, err
	}
	flows, err := d.openFlows(ctx, espStore, tpls, sub, log.With("component", "flow"))
	if err != nil {
		return nil, err
	}
	accts, err := openAccounts(ctx, espStore, log.With("component", "account"))
	if err != nil {
		return nil, err
	}
	trk, err := openTracking(cfg.DataDir, log.With("component", "tracking"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, trk.log.Close)
	d.tracking = trk
	trackDoms, err := openTrackingDomains(ctx, cfg, espStore, res)
	if err != nil {
		return nil, err
	}
	trackSet, err := openTrackingSettings(ctx, keys, espStore, accts)
	if err != nil {
		return nil, err
	}
	ingestH := ingest.NewHTTPHandler(ingest.HTTPOptions{
		Hostname: cfg.Hostname, Keys: keys, MaxMessageSize: cfg.SMTP.MaxMessageSize,
		MaxRecipients: cfg.SMTP.MaxRecipients, CampaignStream: cfg.HTTP.CampaignStream,
		Submitter: sub, Templates: tpls,
		Tracker: &tracking.APITracker{Settings: trackSet, Sign: trk.signer.Encode, BaseURL: trackingBase(cfg, trackDoms)},
		Logger:  log, Registry: reg,
	})
	rep, err := newReputation(cfg, res, q, sh, pol, reg, log.With("component", "reputation"))
	if err != nil {
		return nil, err
	}
	campOpts := d.campaignOptions(tpls, trackDoms, trackSet)
	campOpts.Keys = func(ctx context.Context) ([]httpapi.Key, error) {
		ks, err := accts.Keys(ctx)
		out := make([]httpapi.Key, len(ks))
		for i, k := range ks {
			out[i] = k.Limits()
		}
		return out, err
	}
	camps.SetOptions(campOpts)
	prefs := preferences(pol, espStore, log)
	metricsH := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	api := admin.Options{
		Keys:                keys,
		Accounts:            accts,
		UI:                  true,
		Queue:               q,
		Messages:            ingestH,
		MessageMaxBody:      2*cfg.SMTP.MaxMessageSize + 64<<10,
		Events:              d.events.svc.Load().Handler(),
		Policy:              pol.Handler(),
		Unsubscribe:         pol.PublicHandler(),
		Preferences:         prefs,
		TrackingDomains:     trackDoms.Handler(),
		TrackingSettings:    trackSet.Handler(),
		Tracking:            trk.handler,
		TrackingStats:       trk.log.StatsHandler(camps.CampaignsOfSegment),
		Reputation:          rep.Handler(),
		Audiences:           audH,
		Confirm:             confirmer.Handler(),
		Campaigns:           camps.Handler(),
		Templates:           tpls.Handler(),
		Flows:               flows.Handler(),
		Verify:              ver.Handler(),
		PolicyStatus:        func() any { return sh.Status() },
		MetricsAccess:       cfg.Metrics.Access,
		Profiling:           cfg.HTTP.Profiling,
		PublicReadTimeout:   cfg.HTTP.PublicReadTimeout.Duration,
		PublicMaxConnsPerIP: cfg.HTTP.PublicMaxConnsPerIP,
		Logger:              log.With("component", "admin"),
	}
	if cfg.Metrics.Listen == "" {
		api.Metrics = metricsH
	}
	d.router = admin.New(api)

	// Listeners first, so a port clash fails start instead of a goroutine.
	smtpLn, err := netx.Listen(cfg.SMTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("smtp listen: %w", err)
	}
	listeners = append(listeners, smtpLn)
	smtpLn = netx.SMTP(smtpLn) // batched replies; smtp.read_timeout ends a trickling client
	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	listeners = append(listeners, httpLn)
	d.httpSrv = admin.ServerTimeouts(d.router, cfg.HTTP.HTTPLimits)
	var metricsLn net.Listener
	if cfg.Metrics.Listen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
		listeners = append(listeners, metricsLn)
		d.metricsSrv = admin.ServerTimeouts(admin.New(admin.Options{Keys: keys, Metrics: metricsH, MetricsAccess: cfg.Metrics.Access,
			PublicReadTimeout: cfg.HTTP.PublicReadTimeout.Duration, PublicMaxConnsPerIP: cfg.HTTP.PublicMaxConnsPerIP}), cfg.HTTP.HTTPLimits)
	}
	trackLn, trackSrv, certs, err := trackingTLS(cfg, keys, trackDoms, trk.handler, prefs,
		tracking.CertOptions{Events: q, Registry: reg, Logger: log.With("component", "tracking")})
	if err != nil {
		return nil, err
	}
	if trackLn != nil {
		listeners = append(listeners, trackLn)
		d.trackSrv = trackSrv
		// Plain HTTP for a tracking host we serve HTTPS for goes there.
		_, port, _ := net.SplitHostPort(cfg.Tracking.HTTPSListen)
		d.httpSrv.Handler = certs.RedirectHTTP(d.httpSrv.Handler, port)
	}
	if err := d.events.run(d); err != nil {
		return nil, err
	}

	dctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		events.ForwardSuppressions(dctx, pol.Suppressions(), q, log.With("component", "events"))
	}()
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		tracking.Forward(dctx, trk.log, q, time.Second, log.With("component", "tracking"))
	}()
	if cfg.Reputation.Enabled {
		d.delivery.Add(1)
		go func() {
			defer d.delivery.Done()
			rep.Run(dctx) // blocklist checks every reputation.interval
		}()
	}
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		// Delivery outcomes per campaign, provider and type for the stats.
		tracking.FollowDeliveries(dctx, trk.log, q, time.Second, log.With("component", "tracking"))
	}()
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		checkTrackingDomains(dctx, trackDoms, 10*time.Minute, log.With("component", "tracking"))
	}()
	if certs != nil {
		d.delivery.Add(1)
		go func() {
			defer d.delivery.Done()
			// Certificate expiry: gauge, warning log, cert_* events.
			certs.WatchCerts(dctx, cfg.Tracking.CertCheckInterval.Duration)
		}()
	}
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		// Contacts follow the suppression list (bounced, complained,
		// unsubscribed): ARCHITECTURE.md, ESP layer.
		d.esp.FollowSuppressions(dctx, q, time.Second, log.With("component", "audience"))
	}()
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		// Contacts' last_sent, last_opened, last_clicked (engagement
		// segments and flow conditions) from the event log.
		d.esp.FollowEngagement(dctx, q, 5*time.Second, log.With("component", "audience"))
	}()
	d.startFlows(dctx, flows, q)
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		confirmer.Run(dctx) // double opt-in confirmations
	}()
	d.delivery.Add(1)
	go func() {
		defer d.delivery.Done()
		if err := dl.Run(dctx, q); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, queue.ErrClosed) {
			log.Error("delivery stopped", "err", err)
		}
	}()
	go func() {
		if err := smtpSrv.Serve(smtpLn); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("smtp server", "err", err)
		}
	}()
	serveHTTP(log, "http server", d.httpSrv, httpLn)
	started := []any{"smtp", smtpLn.Addr().String(), "http", httpLn.Addr().String(), "data_dir", cfg.DataDir, "hostname", cfg.Hostname}
	if trackLn != nil {
		serveHTTP(log, "tracking https server", d.trackSrv, trackLn)
		started = append(started, "tracking_https", trackLn.Addr().String())
	}
	if metricsLn != nil {
		serveHTTP(log, "metrics server", d.metricsSrv, metricsLn)
		started = append(started, "metrics", metricsLn.Addr().String())
	}
	// Campaigns left sending by a previous process resume now.
	if err := d.campaigns.Start(d.campaignCtx); err != nil {
		return nil, fmt.Errorf("campaigns: %w", err)
	}
	log.Info("petreld started", started...)
	return d, nil
}

// reload re-reads the config file and swaps in the new shaping rules
// (SIGHUP). Other sections need a restart; the queue is never touched.
func (d *daemon) reload() {
	if d.cfgPath == "" {
		d.log.Info("SIGHUP: no config file (embedded defaults); nothing to reload")
		return
	}
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		d.log.Error("SIGHUP: config not reloaded", "err", err)
		return
	}
	if err := d.shaper.Reload(cfg.Shaping); err != nil {
		d.log.Error("SIGHUP: shaping rules not reloaded", "err", err)
		return
	}
	d.log.Info("SIGHUP: shaping rules reloaded", "config", d.cfgPath)
}

// shutdown stops accepting, lets in-flight work finish up to the
// configured timeout, then closes the spool cleanly.
func (d *daemon) shutdown() error {
	timeout := d.cfg.Delivery.ShutdownTimeout.Duration
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	if err := d.smtp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("smtp: %w", err))
	}
	if err := d.events.shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := d.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if d.trackSrv != nil {
		if err := d.trackSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracking https: %w", err))
		}
	}
	if d.metricsSrv != nil {
		if err := d.metricsSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	d.cancel()
	d.delivery.Wait()
	if err := d.closeAll(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *daemon) closeAll() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	d.closers = nil
	return errors.Join(errs...)
}

// serveHTTP serves srv on ln in a goroutine, logging a failure as what.
func serveHTTP(log *slog.Logger, what string, srv *http.Server, ln net.Listener) {
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what, "err", err)
		}
	}()
}
