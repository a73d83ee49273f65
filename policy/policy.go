// Package policy is the sender-side policy facade that ingest and delivery
// ask (DESIGN invariant 6: policy is asked, never asks): suppression
// checks, the sending-domain requirement, List-Unsubscribe headers and
// DKIM signing, plus the HTTP API for suppressions and sending domains
// and the public one-click unsubscribe endpoint. The parts live in
// sub-packages: suppress (store), dkim (keys, signing), domains (DNS
// checks, registry), unsub (tokens). Traffic shaping is policy/shaping.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/policy/dkim"
	"github.com/petrel-mta/petrel/policy/domains"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/policy/unsub"
)

// Compile-time check that Engine is what delivery asks; the check that it
// is an ingest.Policy lives in ingest_test.go, so that policy does not
// import a later stage.
var _ mta.Suppressor = (*Engine)(nil)

// Options configure New.
type Options struct {
	Config *config.Config
	// DataDir overrides Config.DataDir when set.
	DataDir string
	Logger  *slog.Logger
	// Registry receives the policy metrics; nil means unregistered.
	Registry *prometheus.Registry
	// Resolver answers the sending-domain checks. Leave it nil: each
	// check run then gets a fresh dns.Resolver on Config.DNS, so a
	// record the operator just published is not hidden by a cached
	// negative answer.
	Resolver domains.Resolver
	// OnSuppressionChange is called after every suppression added or
	// removed (API, import, unsubscribe, bounce feeding); the lead wires
	// it to the event log.
	OnSuppressionChange func(e suppress.Entry, removed bool)
}

// Engine is the sender-side policy. Its methods are safe for concurrent
// use.
type Engine struct {
	cfg      *config.Config
	dataDir  string
	log      *slog.Logger
	store    *suppress.Store
	keys     *dkim.Keyring
	reg      *domains.Registry
	resolver domains.Resolver
	tokens   *unsub.Tokens
	m        *metrics

	unsubStreams []string
	unsubDomain  string

	keygenMu  sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New opens the suppression store (<data_dir>/suppression), loads DKIM
// keys (<data_dir>/dkim and [[sending.dkim]]), the sending-domain
// registry (<data_dir>/domains.json) and the unsubscribe secret, and
// starts re-checking registered domains every
// sending.domain_check_interval. Close stops it.
func New(opts Options) (*Engine, error) {
	if opts.Config == nil {
		return nil, errors.New("policy: Options.Config is required")
	}
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "policy")
	dir := opts.DataDir
	if dir == "" {
		dir = cfg.DataDir
	}
	e := &Engine{cfg: cfg, dataDir: dir, log: log, resolver: opts.Resolver, m: newMetrics(opts.Registry),
		unsubStreams: cfg.Sending.ListUnsubscribeStreams, unsubDomain: cfg.Sending.UnsubscribeDomain}
	if e.unsubDomain == "" {
		e.unsubDomain = cfg.Bounce.Domain
	}
	var err error
	if _, err := e.newResolver(); err != nil {
		return nil, err
	}
	if e.keys, err = dkim.NewKeyring(filepath.Join(dir, "dkim"), cfg.Sending.DKIM, cfg.Sending.DKIMDefaultDomain, log); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if e.reg, err = domains.OpenRegistry(filepath.Join(dir, "domains.json")); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	secret := []byte(cfg.Sending.UnsubscribeSecret)
	if len(secret) == 0 {
		if secret, err = unsub.LoadOrCreateSecret(filepath.Join(dir, "unsubscribe.key")); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	if e.tokens, err = unsub.New(secret); err != nil {
		return nil, fmt.Errorf("policy: sending.unsubscribe_secret: %w", err)
	}
	if e.store, err = suppress.Open(filepath.Join(dir, "suppression"), log); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e.store.OnChange = opts.OnSuppressionChange
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go e.refreshLoop(ctx, cfg.Sending.DomainCheckInterval.Duration)
	return e, nil
}

// Close stops the domain re-checks and closes the suppression store.
// Later calls return the first call's result.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		<-e.done
		e.closeErr = e.store.Close()
	})
	return e.closeErr
}

// Suppressions is the suppression store, for bounce/complaint feeding
// (Add with reason hard_bounce or complaint).
func (e *Engine) Suppressions() *suppress.Store { return e.store }

// Suppress adds addr to the suppression list of stream ("*" = every
// stream) with reason (hard_bounce, complaint, unsubscribe, manual) and
// source (e.g. "bounce:<msgid>", "fbl:yahoo"); bounce feeds it.
func (e *Engine) Suppress(stream, addr string, reason suppress.Reason, source string) error {
	if _, err := e.store.Add(suppress.Entry{Address: addr, Stream: stream, Reason: reason, Source: source}); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

// Keyring is the DKIM keyring.
func (e *Engine) Keyring() *dkim.Keyring { return e.keys }

// Suppressed implements ingest.Policy and mta.Suppressor: addr is
// suppressed in stream or globally.
func (e *Engine) Suppressed(stream, addr string) (string, bool) {
	r, ok := e.store.Suppressed(stream, addr)
	if ok {
		e.m.suppressed.Inc()
	}
	return string(r), ok
}

// SenderError is CheckSender's refusal.
type SenderError struct {
	Domain string
	// Status is the domain's current status ("" when not registered).
	Status domains.Status
	// Problem names the record at fault.
	Problem string
}

func (e *SenderError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("sender domain %s is not a registered sending domain", e.Domain)
	}
	if e.Problem == "" {
		return fmt.Sprintf("sender domain %s is %s", e.Domain, e.Status)
	}
	return fmt.Sprintf("sender domain %s is %s: %s", e.Domain, e.Status, e.Problem)
}

// CheckSender implements ingest.Policy: with require_domain_status usable
// or verified, fromDomain (or its nearest registered parent) must be a
// registered sending domain whose cached status is at least that. It
// never touches DNS.
func (e *Engine) CheckSender(_ context.Context, fromDomain string) error {
	want := domains.Status(e.cfg.RequireDomainStatus)
	if want != domains.Usable && want != domains.Verified {
		return nil
	}
	return e.SendingDomainReady(fromDomain, want)
}

// CampaignDomainStatus is the status a campaign's sending domain needs:
// verified when require_domain_status says so, usable otherwise.
func (e *Engine) CampaignDomainStatus() domains.Status {
	if domains.Status(e.cfg.RequireDomainStatus) == domains.Verified {
		return domains.Verified
	}
	return domains.Usable
}

// SendingDomainReady reports (nil) whether fromDomain, or its nearest
// registered parent, is a registered sending domain whose cached status
// is at least want; the *SenderError names the record that is missing.
// It never touches DNS.
func (e *Engine) SendingDomainReady(fromDomain string, want domains.Status) error {
	d := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	var res domains.Result
	found := false
	for cur := d; cur != "" && !found; {
		res, found = e.reg.Get(cur)
		i := strings.IndexByte(cur, '.')
		if i < 0 {
			break
		}
		cur = cur[i+1:]
	}
	if !found {
		e.m.senderRefused.Inc()
		return &SenderError{Domain: d}
	}
	if res.Status.Rank() >= want.Rank() {
		return nil
	}
	e.m.senderRefused.Inc()
	prob := res.Problem(want)
	if res.Checked.IsZero() {
		prob = "not checked yet"
	}
	return &SenderError{Domain: d, Status: res.Status, Problem: prob}
}

// Prepare is PrepareMessage for a message held as bytes: it parses msg,
// prepares it for stream and rcpts and returns the final bytes. A
// message whose header does not parse is returned unchanged.
func (e *Engine) Prepare(ctx context.Context, stream string, rcpts []string, msg []byte) ([]byte, error) {
	m, err := mta.ParseMessage(msg)
	if err != nil {
		return msg, nil
	}
	m.Stream, m.Rcpts = stream, rcpts
	if err := e.PrepareMessage(ctx, m); err != nil {
		return nil, err
	}
	return m.Bytes(), nil
}

// PrepareMessage implements ingest.Policy: for List-Unsubscribe streams
// (or when m.ListUnsubscribe says so, whatever the stream) it inserts List-Unsubscribe (one-click HTTPS URL and mailto, token for
// the FIRST recipient: marketing mail is expected one recipient per
// message) and List-Unsubscribe-Post below the trace fields, unless the
// message already has List-Unsubscribe or Petrel generated it (a DSN);
// then it DKIM-signs with the keys of the From domain. It works on m's
// header index and adds fields to m: it neither parses nor copies the
// message.
func (e *Engine) PrepareMessage(_ context.Context, m *mta.Message) error {
	want := slices.Contains(e.unsubStreams, m.Stream)
	if m.ListUnsubscribe != nil {
		want = *m.ListUnsubscribe // the API message's unsubscribe tracking setting
	}
	if len(m.Rcpts) > 0 && !m.Generated && want && m.Count("List-Unsubscribe") == 0 {
		if h := e.tokens.Headers(e.cfg.Sending.UnsubscribeURL, e.unsubDomain, m.Stream, m.Rcpts[0]); h != nil {
			m.Insert(string(h))
			e.m.listUnsub.Inc()
		}
	}
	start := time.Now()
	signed, err := e.keys.SignMessage(m)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if signed {
		e.m.signed.Inc()
		e.m.signSeconds.Observe(time.Since(start).Seconds())
	}
	return nil
}

// DomainStatusWarning returns the warning petreld should log at start
// when require_domain_status is none while a listener is not loopback
// (anyone reachable may then send as any domain), or "" when fine.
func DomainStatusWarning(cfg *config.Config) string {
	if cfg.RequireDomainStatus != "" && cfg.RequireDomainStatus != "none" {
		return ""
	}
	for _, l := range []string{cfg.SMTP.Listen, cfg.HTTP.Listen} {
		if l == "" {
			continue
		}
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		ip := net.ParseIP(host)
		if host == "localhost" || (ip != nil && ip.IsLoopback()) {
			continue
		}
		return fmt.Sprintf("require_domain_status is \"none\" and %s listens on a non-loopback address: mail from any sender domain is accepted and signed; set require_domain_status = \"usable\" in production", l)
	}
	return ""
}

// refreshLoop re-checks every registered domain now and every interval.
func (e *Engine) refreshLoop(ctx context.Context, every time.Duration) {
	defer close(e.done)
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		e.RefreshDomains(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newResolver returns Options.Resolver or a fresh (empty-cache) resolver.
func (e *Engine) newResolver() (domains.Resolver, error) {
	if e.resolver != nil {
		return e.resolver, nil
	}
	r, err := dns.NewResolver(e.cfg.DNS.Resolver, e.cfg.DNS.Timeout.Duration, e.log)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return r, nil
}

// RefreshDomains re-checks every registered domain in DNS and updates
// the cache CheckSender reads.
func (e *Engine) RefreshDomains(ctx context.Context) {
	r, err := e.newResolver()
	if err != nil {
		e.log.Warn("sending domain checks skipped", "err", err)
		return
	}
	for _, d := range e.reg.Domains() {
		if ctx.Err() != nil {
			return
		}
		if _, err := e.checkDomain(ctx, r, d); err != nil {
			e.log.Warn("sending domain check failed", "domain", d, "err", err)
		}
	}
}

// expect is what the DNS checks compare against.
func (e *Engine) expect() domains.Expect {
	return domains.Expect{
		SPFIPs:       e.cfg.Sending.SPFIPs,
		SPFInclude:   e.cfg.Sending.SPFInclude,
		DMARCReport:  e.cfg.Sending.DMARCReport,
		BounceDomain: e.cfg.Bounce.Domain,
		MXHost:       e.cfg.Hostname,
	}
}

// CheckDomain checks a registered domain in DNS now and caches the result.
func (e *Engine) CheckDomain(ctx context.Context, domain string) (domains.Result, error) {
	r, err := e.newResolver()
	if err != nil {
		return domains.Result{}, err
	}
	return e.checkDomain(ctx, r, domain)
}

func (e *Engine) checkDomain(ctx context.Context, r domains.Resolver, domain string) (domains.Result, error) {
	d, err := domains.Normalize(domain)
	if err != nil {
		return domains.Result{}, err
	}
	if _, ok := e.reg.Get(d); !ok {
		return domains.Result{}, fmt.Errorf("policy: %s: %w", d, domains.ErrUnknown)
	}
	res, err := domains.CheckDomain(ctx, r, d, e.expect(), e.keys.Keys(d))
	if err != nil {
		return domains.Result{}, fmt.Errorf("policy: check %s: %w", d, err)
	}
	if err := e.reg.SetResult(res); err != nil {
		return domains.Result{}, fmt.Errorf("policy: %w", err)
	}
	e.log.Info("sending domain checked", "domain", d, "status", res.Status)
	stored, _ := e.reg.Get(d)
	return stored, nil
}

// DomainInfo is a sending domain with the records to publish and the
// last check.
type DomainInfo struct {
	Domain  string           `json:"domain"`
	Status  domains.Status   `json:"status"`
	Records []domains.Record `json:"records"`
	Last    *domains.Result  `json:"last_check,omitempty"`
}

// Domain returns the info of a registered domain.
func (e *Engine) Domain(domain string) (DomainInfo, error) {
	d, err := domains.Normalize(domain)
	if err != nil {
		return DomainInfo{}, err
	}
	res, ok := e.reg.Get(d)
	if !ok {
		return DomainInfo{}, fmt.Errorf("policy: %s: %w", d, domains.ErrUnknown)
	}
	recs, err := domains.Records(d, e.expect(), e.keys.Keys(d))
	if err != nil {
		return DomainInfo{}, fmt.Errorf("policy: %w", err)
	}
	info := DomainInfo{Domain: d, Status: res.Status, Records: recs}
	if !res.Checked.IsZero() {
		info.Last = &res
	}
	return info, nil
}

// Domains lists the registered sending domains.
func (e *Engine) Domains() []string { return e.reg.Domains() }

// AddDomain registers domain, generates a DKIM key for it (selector
// "s1", algo rsa or ed25519; dual adds an Ed25519 key "e1" next to an RSA
// key) unless it already has keys, checks it in DNS and returns the
// records to publish.
func (e *Engine) AddDomain(ctx context.Context, domain, algo string, dual bool) (DomainInfo, error) {
	d, err := domains.Normalize(domain)
	if err != nil {
		return DomainInfo{}, err
	}
	e.keygenMu.Lock()
	if len(e.keys.Keys(d)) == 0 {
		gen := []struct{ sel, algo string }{{"s1", algo}}
		if dual {
			gen = []struct{ sel, algo string }{{"s1", dkim.AlgoRSA}, {"e1", dkim.AlgoEd25519}}
		}
		for _, g := range gen {
			if _, err := dkim.Keygen(filepath.Join(e.dataDir, "dkim"), d, g.sel, g.algo); err != nil {
				e.keygenMu.Unlock()
				return DomainInfo{}, fmt.Errorf("policy: %w", err)
			}
		}
		if err := e.keys.Reload(); err != nil {
			e.keygenMu.Unlock()
			return DomainInfo{}, fmt.Errorf("policy: %w", err)
		}
	}
	e.keygenMu.Unlock()
	if _, err := e.reg.Add(d); err != nil {
		return DomainInfo{}, fmt.Errorf("policy: %w", err)
	}
	if _, err := e.CheckDomain(ctx, d); err != nil {
		e.log.Warn("first check of new sending domain failed", "domain", d, "err", err)
	}
	return e.Domain(d)
}

// RemoveDomain unregisters domain (its DKIM keys stay on disk).
func (e *Engine) RemoveDomain(domain string) error {
	if err := e.reg.Remove(domain); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}
