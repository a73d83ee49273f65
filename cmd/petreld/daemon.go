package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/petrel-mta/petrel/admin"
	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/delivery"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/policy"
	"github.com/petrel-mta/petrel/policy/shaping"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
	"github.com/petrel-mta/petrel/verify"
)

// daemon holds the running parts; it only wires them together.
type daemon struct {
	cfg     *config.Config
	cfgPath string
	log     *slog.Logger

	q        *queue.Queue
	rules    *bounce.Rules
	shaper   *shaping.Shaper
	policy   *policy.Engine
	smtp     *ingest.SMTPServer
	httpSrv  *http.Server
	cancel   context.CancelFunc
	delivery sync.WaitGroup
	events   eventsPart
	closers  []func() error
}

func start(ctx context.Context, cfg *config.Config, cfgPath string, log *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, cfgPath: cfgPath, log: log}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
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
		d.closeAll()
		return nil, fmt.Errorf("queue metrics: %w", err)
	}

	sh, err := shaping.New(cfg.Shaping, cfg.Hostname, log.With("component", "shaping"), reg)
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("shaping: %w", err)
	}
	d.shaper = sh
	pol, err := policy.New(policy.Options{
		Config:   cfg,
		Logger:   log,
		Registry: reg,
		OnSuppressionChange: func(e suppress.Entry, removed bool) {
			if removed {
				return
			}
			ev := queue.Event{Type: "suppressed", Recipient: e.Address, Stream: e.Stream, Reason: string(e.Reason)}
			if err := q.AppendEvents(context.Background(), []queue.Event{ev}); err != nil {
				log.Warn("record suppression event", "err", err)
			}
		},
	})
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("policy: %w", err)
	}
	d.policy = pol
	if err := d.events.setup(d, q, pol, sh, reg); err != nil {
		d.closeAll()
		return nil, err
	}
	d.closers = append(d.closers, pol.Close)
	if w := policy.DomainStatusWarning(cfg); w != "" {
		log.Warn(w)
	}

	res, err := dns.NewResolver(cfg.DNS.Resolver, cfg.DNS.Timeout.Duration, log.With("component", "dns"))
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("resolver: %w", err)
	}
	dl, err := delivery.New(delivery.Options{
		Hostname:   cfg.Hostname,
		Config:     cfg.Delivery,
		Resolver:   res,
		Transport:  cfg.TransportFor,
		Shaper:     d.events.shaper(sh),
		Suppressor: pol,
		Classify: func(code int, enhanced, text string) (string, bool) {
			c := rules.Classify(code, enhanced, text)
			return c.Reason, c.Hard
		},
		ReturnPath: returnPath(cfg.Bounce),
		Logger:     log.With("component", "delivery"),
		Registry:   reg,
	})
	if err != nil {
		d.closeAll()
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
		d.closeAll()
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
		Logger:    log.With("component", "smtp"),
		Registry:  reg,
	})
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("smtp: %w", err)
	}
	d.smtp = smtpSrv

	apiKeys := cfg.HTTP.APIKeys
	if len(apiKeys) == 0 {
		k, path, err := localAPIKey(cfg.DataDir)
		if err != nil {
			d.closeAll()
			return nil, err
		}
		apiKeys = []config.APIKey{{Name: "local", Key: k}}
		log.Info("no [[http.api_keys]] configured: using the local key in "+path+" (petrelctl reads it from its -data-dir)", "path", path)
	}
	keys := httpapi.NewKeys(apiKeys)
	mux := http.NewServeMux()
	adminH := admin.Handler(admin.Options{Queue: q, Logger: log.With("component", "admin")})
	ingestH := ingest.NewHTTPHandler(ingest.HTTPOptions{
		Hostname: cfg.Hostname, Keys: keys, MaxMessageSize: cfg.SMTP.MaxMessageSize,
		MaxRecipients: cfg.SMTP.MaxRecipients, CampaignStream: cfg.HTTP.CampaignStream,
		Submitter: sub, Messages: q,
		Logger: log.With("component", "http"), Registry: reg,
	})
	mux.Handle("/api/v1/messages", ingestH)
	mux.Handle("/api/v1/messages/", ingestH)
	mux.Handle("/api/v1/queue", keys.Require(adminH))
	mux.Handle("/api/v1/queue/", keys.Require(adminH))
	mux.Handle("/api/v1/events", keys.Require(adminH))
	d.events.mount(mux, keys)
	polH := keys.Require(pol.Handler())
	mux.Handle("/api/v1/suppressions", polH)
	mux.Handle("/api/v1/suppressions/", polH)
	mux.Handle("/api/v1/domains", polH)
	mux.Handle("/api/v1/domains/", polH)
	mux.Handle("/unsubscribe/", pol.PublicHandler())
	verH := keys.Require(ver.Handler())
	mux.Handle("/api/v1/verify", verH)
	mux.Handle("/api/v1/verify/", verH)
	mux.Handle("GET /api/v1/policy/status", keys.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, sh.Status())
	})))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)

	// Listeners first, so a port clash fails start instead of a goroutine.
	smtpLn, err := net.Listen("tcp", cfg.SMTP.Listen)
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("smtp listen: %w", err)
	}
	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		smtpLn.Close()
		d.closeAll()
		return nil, fmt.Errorf("http listen: %w", err)
	}
	d.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	if err := d.events.run(d); err != nil {
		smtpLn.Close()
		httpLn.Close()
		d.closeAll()
		return nil, err
	}

	dctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
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
	go func() {
		if err := d.httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("petreld started", "smtp", smtpLn.Addr().String(), "http", httpLn.Addr().String(),
		"data_dir", cfg.DataDir, "hostname", cfg.Hostname)
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

// returnPath gives delivery a VERP return path when the bounce domain and
// secret are configured: per recipient when the transaction carries one
// recipient, else naming the message only (the report's recipient then
// identifies who failed).
func returnPath(bc config.BounceConfig) func(b *queue.Batch, idx []int) string {
	if bc.Domain == "" || bc.Secret == "" {
		return nil
	}
	v := bounce.VERP{Domain: bc.Domain, Secret: []byte(bc.Secret)}
	return func(b *queue.Batch, idx []int) string {
		if len(idx) == 1 {
			return v.Encode(b.MsgID, b.Rcpts[idx[0]].Index)
		}
		return v.Encode(b.MsgID, bounce.AnyRecipient)
	}
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

// localKeyFile is the API key petreld generates, readable by its owner
// only, when the config lists no [[http.api_keys]]: the embedded defaults
// then still give petrelctl (run by the same user) an authenticated API.
const localKeyFile = "api.key"

// localAPIKey returns the key in <dataDir>/api.key, creating it (32
// random bytes, hex) on first use.
func localAPIKey(dataDir string) (key, path string, err error) {
	path = filepath.Join(dataDir, localKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, path, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("read %s: %w", path, err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+).
	key = hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", "", fmt.Errorf("install %s: %w", path, err)
	}
	return key, path, nil
}
