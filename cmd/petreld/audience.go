package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/petrel-mta/petrel/audience"
)

// openAudiences opens the ESP database ([esp] database: embedded SQLite
// in <data_dir>/esp.db by default, PostgreSQL for a postgres:// URL),
// running its migrations, and returns the audience API. Import jobs left
// unfinished by a previous process resume in the background; they stop
// when petreld shuts down (the store closes after them).
func (d *daemon) openAudiences(ctx context.Context, log *slog.Logger) (http.Handler, error) {
	cfg := d.cfg
	st, err := audience.Open(ctx, cfg.ESP.DatabaseDSN(cfg.DataDir), audience.Options{
		ImportDir: cfg.ESP.ImportPath(cfg.DataDir),
		BatchSize: cfg.ESP.ImportBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("[esp] database: %w", err)
	}
	d.closers = append(d.closers, st.Close)
	jobs, cancel := context.WithCancel(context.Background())
	d.closers = append(d.closers, func() error { cancel(); return nil }) // runs before st.Close
	return audience.Handler(st, audience.HandlerOptions{Context: jobs, Logger: log, MaxUpload: cfg.ESP.MaxUploadBytes, ResumeImports: true}), nil
}
