// Command petreld is the Petrel mail transfer agent daemon.
//
//	petreld [-config petrel.toml] [-check-config] [-flush-on-start]
//
// Without -config it runs on embedded defaults: data in ./petrel-data,
// SMTP submission on 127.0.0.1:2525, HTTP API on 127.0.0.1:8025, relay
// allowed from loopback. SIGTERM/SIGINT shut down gracefully; SIGHUP
// reloads the shaping rules. -flush-on-start makes every deferred
// recipient due at once (after an outage, instead of waiting up to a
// retry step); delivery's shaping still paces them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/petrel-mta/petrel/config"
)

func main() {
	tuneMalloc() // before any Pebble store opens (malloc_cgo.go)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is petreld: -check-config reports on stdout (its result is the
// command's output); errors and the log go to stderr.
func run(argv []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petreld", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML config file (default: embedded defaults)")
	check := fs.Bool("check-config", false, "validate the config and exit")
	flushOnStart := fs.Bool("flush-on-start", false, "retry every deferred recipient now instead of at its scheduled time")
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	cfg := config.Default()
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "petreld:", err)
			return 2
		}
		cfg = c
	}
	if *check {
		name := *cfgPath
		if name == "" {
			name = "embedded defaults"
		}
		fmt.Fprintf(stdout, "petreld: config ok (%s)\n", name)
		return 0
	}
	log := newLogger(cfg.Log, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := start(ctx, cfg, *cfgPath, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if *flushOnStart {
		n, err := d.q.Flush(ctx)
		if err != nil {
			log.Error("flush on start", "err", err)
		} else {
			log.Info("flush on start: deferred recipients due now", "recipients", n)
		}
	}
	notifySystemd(ctx, log)
	for {
		select {
		case <-hup:
			d.reload()
			continue
		case <-ctx.Done():
		}
		break
	}
	log.Info("shutting down")
	if err := d.shutdown(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(&componentHandler{inner: h})
}
