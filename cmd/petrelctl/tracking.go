package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/petrel-mta/petrel/policy/unsub"
	"github.com/petrel-mta/petrel/tracking"
)

func trackingCommands() map[string]command {
	return map[string]command{
		"tracking token": {"-data-dir DIR -kind open|click [-campaign C -message M -recipient R -url URL -provider P -stream S -sent UNIX]: " +
			"print a tracking token signed with DIR/tracking.key (local, no daemon; for tests and benchmarks)", trackingToken},
	}
}

func trackingToken(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tracking token", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	dataDir := fs.String("data-dir", "", "petreld's data_dir (holding tracking.key)")
	kind := fs.String("kind", "open", "open or click")
	var t tracking.Token
	fs.StringVar(&t.Campaign, "campaign", "", "campaign id")
	fs.StringVar(&t.Message, "message", "m", "message id (opaque)")
	fs.StringVar(&t.Recipient, "recipient", "r", "recipient id (opaque)")
	fs.StringVar(&t.URL, "url", "", "link target (click)")
	fs.StringVar(&t.Provider, "provider", "", "mailbox provider label")
	fs.StringVar(&t.Stream, "stream", "", "stream (campaign type)")
	fs.Int64Var(&t.Sent, "sent", time.Now().Add(-time.Hour).Unix(), "send time, unix seconds")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 0 || *dataDir == "" || (*kind != "open" && *kind != "click") {
		return errUsage
	}
	t.Kind = tracking.Open
	if *kind == "click" {
		t.Kind = tracking.Click
	}
	keyFile := filepath.Join(*dataDir, "tracking.key")
	if _, err := os.Stat(keyFile); err != nil {
		return fmt.Errorf("tracking token: %w (petreld creates it on first start)", err)
	}
	secret, err := unsub.LoadOrCreateSecret(keyFile)
	if err != nil {
		return err
	}
	s, err := tracking.NewSigner(secret)
	if err != nil {
		return err
	}
	tok, err := s.Encode(t)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out, tok)
	return nil
}
