package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/campaign"
	"github.com/petrel-mta/petrel/tracking"
	"github.com/petrel-mta/petrel/verify"
)

// openAudiences opens the ESP database ([esp] database: embedded SQLite
// in <data_dir>/esp.db by default, PostgreSQL for a postgres:// URL),
// running its migrations, and returns the audience API. Import jobs left
// unfinished by a previous process resume in the background; they stop
// when petreld shuts down (the store closes after them).
func (d *daemon) openAudiences(ctx context.Context, ver *verify.Verifier, log *slog.Logger) (*audience.Store, http.Handler, error) {
	cfg := d.cfg
	st, err := audience.Open(ctx, cfg.ESP.DatabaseDSN(cfg.DataDir), audience.Options{
		ImportDir: cfg.ESP.ImportPath(cfg.DataDir),
		BatchSize: cfg.ESP.ImportBatch,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("[esp] database: %w", err)
	}
	d.closers = append(d.closers, st.Close)
	jobs, cancel := context.WithCancel(context.Background())
	d.closers = append(d.closers, func() error { cancel(); return nil }) // runs before st.Close
	return st, audience.Handler(st, audience.HandlerOptions{Context: jobs, Logger: log, MaxUpload: cfg.ESP.MaxUploadBytes, ResumeImports: true,
		Verify: cleaningVerifier(ver)}), nil
}

// openCampaigns sets up the campaign service on the ESP database; its
// sends go through sub (ingest's one entry point) and are started (and
// resumed, for campaigns left sending) by startCampaigns. At shutdown the
// sends stop before the ESP store and the queue close.
func (d *daemon) openCampaigns(ctx context.Context, st *audience.Store, sub campaign.Submitter, log *slog.Logger) (*campaign.Service, error) {
	svc, err := campaign.NewService(ctx, st, sub, d.policy.UnsubscribeURL, log)
	if err != nil {
		return nil, err
	}
	sends, cancel := context.WithCancel(context.Background())
	d.campaignCtx = sends
	d.closers = append(d.closers, func() error { cancel(); svc.Wait(); return nil })
	return svc, nil
}

// openConfirmer sets up double opt-in: confirmations go through sub
// (transactional stream) from confirm@<hostname> unless the audience sets
// its own sender, with links under the public base URL ([sending]
// unsubscribe_url, else the API listener). startConfirmer runs it.
func (d *daemon) openConfirmer(ctx context.Context, st *audience.Store, sub audience.Submitter, log *slog.Logger) (*audience.Confirmer, error) {
	base := d.cfg.Sending.UnsubscribeURL
	if base == "" {
		base = "http://" + d.cfg.HTTP.Listen
	}
	return st.NewConfirmer(ctx, audience.ConfirmerOptions{Submitter: sub, BaseURL: base, DefaultFrom: "confirm@" + d.cfg.Hostname,
		TTL: d.cfg.ESP.ConfirmTTL.Duration, Logger: log})
}

// cleaningVerifier adapts verify (syntax, domain, MX, SMTP probe,
// catch-all, disposable, role, typo) to list cleaning's verdicts:
// deliverable → valid, risky, undeliverable → invalid, unknown.
func cleaningVerifier(v *verify.Verifier) audience.VerifyFunc {
	return func(ctx context.Context, addrs []string) []audience.Verification {
		rs := v.VerifyMany(ctx, addrs, nil)
		out := make([]audience.Verification, len(rs))
		for i, r := range rs {
			verdict := audience.VerdictUnknown
			switch r.Verdict {
			case verify.Deliverable:
				verdict = audience.VerdictValid
			case verify.Risky:
				verdict = audience.VerdictRisky
			case verify.Undeliverable:
				verdict = audience.VerdictInvalid
			}
			out[i] = audience.Verification{Verdict: verdict, Reasons: r.Reasons, Suggestion: r.Suggestion}
		}
		return out
	}
}

// campaignOptions wires the campaign service to the template store, the
// sending-domain registry (campaigns need usable, or verified when
// require_domain_status says so) and the content filter of [esp].
//
// Campaigns track opens and clicks as their From domain's tracking
// settings say (unless a campaign sets its own) with the tracking key, under the From domain's verified tracking domain
// or else the public base URL ([sending] unsubscribe_url); with neither,
// campaigns are not tracked.
func (d *daemon) campaignOptions(tpls *campaign.Templates, doms *tracking.Domains, set *tracking.Settings) campaign.Options {
	cfg := d.cfg
	want := d.policy.CampaignDomainStatus()
	o := campaign.Options{Templates: tpls, Check: campaign.CheckOptions{
		SenderDomain:   func(domain string) error { return d.policy.SendingDomainReady(domain, want) },
		Threshold:      cfg.ESP.SpamThreshold,
		FilterOptional: cfg.ESP.ContentFilterOptional,
		Hostname:       cfg.Hostname,
	}}
	// A/B winners from the engagement aggregates (tracking opens after
	// this, before campaigns start).
	o.Engagement = func(tag string) (int64, int64, error) {
		if d.tracking == nil {
			return 0, 0, fmt.Errorf("tracking not open")
		}
		r, err := d.tracking.log.Report(tag)
		return r.UniqueOpens, r.UniqueClicks, err
	}
	// Without a public base ([sending] unsubscribe_url) or a verified
	// tracking domain, mail is not tracked: links to the API listener
	// (127.0.0.1 by default) would break for every recipient.
	baseURL := trackingBase(cfg, doms)
	o.Tracking = &campaign.Tracking{
		Sign: func(t tracking.Token) (string, error) { return d.tracking.signer.Encode(t) },
		BaseURL: func(fromDomain string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return baseURL(ctx, fromDomain)
		},
		// The switches of the campaign's API key (none: "") over its
		// From domain's, as for the key's own messages.
		Defaults: func(key, fromDomain string) (bool, bool) {
			e := set.For(key, fromDomain)
			return e.Opens, e.Clicks
		},
	}
	if cfg.ESP.ContentFilter != "" {
		o.Check.Filter = &campaign.Rspamd{URL: cfg.ESP.ContentFilter}
	}
	return o
}
