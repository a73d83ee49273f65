package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/petrel-mta/petrel/admin"
	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/delivery"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/queue"
)

// daemon holds the running parts; it only wires them together.
type daemon struct {
	cfg     *config.Config
	cfgPath string
	log     *slog.Logger

	q        *queue.Queue
	smtp     *ingest.SMTPServer
	httpSrv  *http.Server
	cancel   context.CancelFunc
	delivery sync.WaitGroup
	closers  []func() error
}

func start(ctx context.Context, cfg *config.Config, cfgPath string, log *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, cfgPath: cfgPath, log: log}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	q, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queue.Options{
		RetrySchedule:  cfg.Delivery.Retries(),
		MaxLifetime:    cfg.Delivery.MaxQueueLifetime.Duration,
		EventRetention: cfg.Events.Retention.Duration,
		OnFailure:      d.makeDSN,
		Logger:         log.With("component", "queue"),
	})
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	d.q = q
	d.closers = append(d.closers, q.Close)

	res, err := delivery.NewResolver(cfg.DNS.Resolver, cfg.DNS.Timeout.Duration, log.With("component", "dns"))
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("resolver: %w", err)
	}
	dl, err := delivery.New(delivery.Options{
		Hostname:  cfg.Hostname,
		Config:    cfg.Delivery,
		Resolver:  res,
		Transport: cfg.TransportFor,
		Classify: func(code int, enhanced, text string) (string, bool) {
			c := bounce.Classify(code, enhanced, text)
			return c.Reason, c.Hard
		},
		Logger:   log.With("component", "delivery"),
		Registry: reg,
	})
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("delivery: %w", err)
	}

	smtpSrv, err := ingest.NewSMTPServer(ingest.Options{
		Hostname: cfg.Hostname,
		SMTP:     cfg.SMTP,
		Spool:    q,
		Logger:   log.With("component", "smtp"),
		Registry: reg,
	})
	if err != nil {
		d.closeAll()
		return nil, fmt.Errorf("smtp: %w", err)
	}
	d.smtp = smtpSrv

	keys := httpapi.NewKeys(cfg.HTTP.APIKeys)
	mux := http.NewServeMux()
	adminH := admin.Handler(admin.Options{Queue: q, Logger: log.With("component", "admin")})
	ingestH := ingest.NewHTTPHandler(ingest.HTTPOptions{
		Hostname: cfg.Hostname, Keys: keys, MaxMessageSize: cfg.SMTP.MaxMessageSize,
		Spool: q, Messages: q, Logger: log.With("component", "http"), Registry: reg,
	})
	mux.Handle("/api/v1/messages", ingestH)
	mux.Handle("/api/v1/messages/", ingestH)
	mux.Handle("/api/v1/queue", keys.Require(adminH))
	mux.Handle("/api/v1/queue/", keys.Require(adminH))
	mux.Handle("/api/v1/events", keys.Require(adminH))
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

// makeDSN builds the RFC 3464 report the queue enqueues, in the same
// batch, when recipients of a message with a non-null sender fail.
func (d *daemon) makeDSN(msgID string, env queue.Envelope, body []byte, failed []queue.Failure) *queue.NewMessage {
	dsn, err := bounce.BuildDSN(d.cfg.Hostname, msgID, env, body, failed, time.Now())
	if err != nil {
		d.log.Error("build DSN", "id", msgID, "err", err)
		return nil
	}
	return &queue.NewMessage{
		Envelope: queue.Envelope{From: "", Recipients: []string{env.From}, Stream: "transactional", Source: "dsn"},
		Body:     dsn,
	}
}

func (d *daemon) reload() {
	d.log.Info("SIGHUP: reload")
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
