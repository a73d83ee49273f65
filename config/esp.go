package config

import (
	"errors"
	"path/filepath"
	"strings"
	"time"
)

// ESPConfig is the [esp] section: the database of the ESP layer
// (audiences, contacts, segments, imports, consent).
type ESPConfig struct {
	// Database is a postgres:// (or postgresql://) URL for PostgreSQL, or
	// the path of an embedded SQLite file; "" means <data_dir>/esp.db.
	Database string `toml:"database"`
	// ImportDir keeps uploaded CSV files until their import job finishes;
	// "" means <data_dir>/imports.
	ImportDir string `toml:"import_dir"`
	// ImportBatch is the number of CSV rows committed per transaction.
	ImportBatch int `toml:"import_batch"`
	// MaxUploadBytes caps one CSV upload.
	MaxUploadBytes int64 `toml:"max_upload_bytes"`
	// ConfirmTTL is how long a double opt-in confirmation link works.
	ConfirmTTL Duration `toml:"confirm_ttl"`
	// FlowFrequencyCap is the most automation-flow messages one contact
	// gets per FlowFrequencyWindow, across all flows (0: no cap); a send
	// over the cap waits until the window allows it.
	FlowFrequencyCap    int      `toml:"flow_frequency_cap"`
	FlowFrequencyWindow Duration `toml:"flow_frequency_window"`
	// ContentFilter is the base URL of an rspamd worker the campaign
	// pre-send check scores messages with (POST /checkv2); "" = none.
	ContentFilter string `toml:"content_filter"`
	// SpamThreshold is the score above which the check blocks a send.
	SpamThreshold float64 `toml:"spam_threshold"`
	// ContentFilterOptional lets campaigns send while the filter is
	// unreachable (the check warns instead of failing).
	ContentFilterOptional bool `toml:"content_filter_optional"`
}

func defaultESP() ESPConfig {
	return ESPConfig{ImportBatch: 1000, MaxUploadBytes: 1 << 30, ConfirmTTL: Duration{7 * 24 * time.Hour},
		FlowFrequencyWindow: Duration{24 * time.Hour}, SpamThreshold: 5}
}

func (e *ESPConfig) validate() error {
	e.Database = strings.TrimSpace(e.Database)
	switch {
	case e.ImportBatch <= 0 || e.ImportBatch > 10000:
		return errors.New("import_batch must be 1 to 10000")
	case e.MaxUploadBytes <= 0:
		return errors.New("max_upload_bytes must be positive")
	case e.ConfirmTTL.Duration <= 0:
		return errors.New("confirm_ttl must be positive")
	case e.FlowFrequencyCap < 0:
		return errors.New("flow_frequency_cap must be 0 (no cap) or positive")
	case e.FlowFrequencyWindow.Duration <= 0:
		return errors.New("flow_frequency_window must be positive")
	case e.SpamThreshold <= 0:
		return errors.New("spam_threshold must be positive")
	case e.ContentFilter != "" && !strings.HasPrefix(e.ContentFilter, "http://") && !strings.HasPrefix(e.ContentFilter, "https://"):
		return errors.New("content_filter: want an http:// or https:// URL of an rspamd worker")
	case strings.Contains(e.Database, "://") && !strings.HasPrefix(e.Database, "postgres://") && !strings.HasPrefix(e.Database, "postgresql://"):
		return errors.New("database: want a postgres:// URL or a file path")
	}
	return nil
}

// DatabaseDSN returns Database, or the default SQLite file in dataDir.
func (e *ESPConfig) DatabaseDSN(dataDir string) string {
	if e.Database != "" {
		return e.Database
	}
	return filepath.Join(dataDir, "esp.db")
}

// ImportPath returns ImportDir, or the default under dataDir.
func (e *ESPConfig) ImportPath(dataDir string) string {
	if e.ImportDir != "" {
		return e.ImportDir
	}
	return filepath.Join(dataDir, "imports")
}
