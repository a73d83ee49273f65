package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/petrel-mta/petrel/audience"
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
