package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/petrel-mta/petrel/policy/unsub"
	"github.com/petrel-mta/petrel/tracking"
)

func trackingCommands() map[string]command {
	return map[string]command{
		"tracking token": {"-data-dir DIR -kind open|click [-campaign C -message M -recipient R -url URL -provider P -stream S -sent UNIX]: " +
			"print a tracking token signed with DIR/tracking.key (local, no daemon; for tests and benchmarks)", trackingToken},
		"tracking settings": {"the open/click/unsubscribe tracking switches per sending domain and API key", trackingSettings},
		"tracking set": {"domain|key NAME [-opens on|off|inherit] [-clicks on|off|inherit] [-unsubscribe on|off|inherit]: " +
			"set a sending domain's tracking defaults or an API key's overrides (unset flags inherit)", trackingSet},
		"tracking domains": {"custom tracking domains with their CNAME and certificate status", trackingDomains},
	}
}

// onOff renders a tri-state switch.
func onOff(b *bool) string {
	switch {
	case b == nil:
		return "inherit"
	case *b:
		return "on"
	}
	return "off"
}

func trackingSettings(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	var out struct {
		Defaults tracking.Switches       `json:"defaults"`
		Settings []tracking.ScopeSetting `json:"settings"`
	}
	if err := e.call(ctx, "GET", "/api/v1/tracking/settings", nil, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tNAME\tOPENS\tCLICKS\tUNSUBSCRIBE")
	fmt.Fprintf(tw, "default\t-\t%s\t%s\tby stream\n", onOff(out.Defaults.Opens), onOff(out.Defaults.Clicks))
	for _, s := range out.Settings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Scope, s.Name, onOff(s.Opens), onOff(s.Clicks), onOff(s.Unsubscribe))
	}
	return tw.Flush()
}

func trackingSet(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tracking set", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	opens := fs.String("opens", "inherit", "on, off or inherit")
	clicks := fs.String("clicks", "inherit", "on, off or inherit")
	unsub := fs.String("unsubscribe", "inherit", "on, off or inherit (List-Unsubscribe on API messages)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 2 || (pos[0] != "domain" && pos[0] != "key") {
		return errUsage
	}
	var sw tracking.Switches
	for _, f := range []struct {
		v   string
		dst **bool
	}{{*opens, &sw.Opens}, {*clicks, &sw.Clicks}, {*unsub, &sw.Unsubscribe}} {
		switch f.v {
		case "on", "true":
			*f.dst = new(bool)
			**f.dst = true
		case "off", "false":
			*f.dst = new(bool)
		case "inherit", "":
		default:
			return errUsage
		}
	}
	var got tracking.ScopeSetting
	if err := e.call(ctx, "PUT", "/api/v1/tracking/settings/"+pos[0]+"/"+url.PathEscape(pos[1]), sw, &got); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(got)
	}
	fmt.Fprintf(e.Out, "%s %s: opens %s, clicks %s, unsubscribe %s\n", got.Scope, got.Name, onOff(got.Opens), onOff(got.Clicks), onOff(got.Unsubscribe))
	return nil
}

func trackingDomains(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	var out struct {
		Domains []tracking.Domain `json:"domains"`
	}
	if err := e.call(ctx, "GET", "/api/v1/tracking/domains", nil, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSENDING DOMAIN\tCNAME\tCERTIFICATE\tNOT AFTER\tDETAIL")
	for _, d := range out.Domains {
		cert, notAfter := "-", "-"
		if c := d.Certificate; c != nil {
			cert = c.Status
			if !c.NotAfter.IsZero() {
				notAfter = fmt.Sprintf("%s (%d days)", c.NotAfter.UTC().Format(time.RFC3339), c.DaysLeft)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Host, d.SendingDomain, d.Status, cert, notAfter, d.Detail)
	}
	return tw.Flush()
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
