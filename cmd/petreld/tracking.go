package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

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
