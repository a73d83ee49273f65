package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/mta"
)

// Options configure New.
type Options struct {
	Config config.VerifyConfig
	// Resolver answers MX/A/AAAA (delivery's resolver and its TTL cache).
	Resolver *dns.Resolver
	// SMTPPort is the port of MX hosts (delivery.smtp_port; 25 if 0).
	SMTPPort int
	// Hostname is the EHLO name and probe sender domain unless the
	// config sets helo_name / probe_sender.
	Hostname string
	// DataDir is where bulk jobs are kept when jobs_dir is "" (as
	// "<DataDir>/verify-jobs"); both empty keeps jobs in memory only.
	DataDir string
	// Shaper, if set, is asked before each probe session (policy's
	// shaping), in addition to verify's own per-provider limits.
	Shaper mta.Shaper
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registry receives verify's metrics; nil registers none.
	Registry *prometheus.Registry
}

// Verifier checks addresses. It is safe for concurrent use.
type Verifier struct {
	cfg      config.VerifyConfig
	res      *dns.Resolver
	smtpPort int
	helo     string
	sender   string
	lists    *Lists
	log      *slog.Logger
	polite   *politeness
	domains  *ttlCache[domainInfo]
	catchAll *ttlCache[bool]
	// caMu guards caTesting: the domains whose catch-all test runs now,
	// each with a channel closed when it ends.
	caMu      sync.Mutex
	caTesting map[string]chan struct{}
	results   *ttlCache[Result]
	met       *metrics
	jobs      *jobStore
	now       func() time.Time
}

// New builds a Verifier: it loads the lists and opens the job store.
func New(o Options) (*Verifier, error) {
	if o.Resolver == nil {
		return nil, errors.New("verify: a Resolver is required")
	}
	if o.SMTPPort == 0 {
		o.SMTPPort = 25
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := o.Config
	lists, err := LoadLists(ListPaths{Disposable: c.DisposableList, Role: c.RoleList, Free: c.FreeList, Providers: c.ProviderList})
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		cfg:       c,
		res:       o.Resolver,
		smtpPort:  o.SMTPPort,
		helo:      c.HeloName,
		sender:    c.ProbeSender,
		lists:     lists,
		log:       o.Logger,
		polite:    newPoliteness(c.ProviderRate, c.ProviderBurst, c.ProviderConns, o.Shaper),
		domains:   newTTLCache[domainInfo](100_000),
		catchAll:  newTTLCache[bool](100_000),
		caTesting: map[string]chan struct{}{},
		results:   newTTLCache[Result](100_000),
		now:       time.Now,
	}
	if v.helo == "" {
		v.helo = o.Hostname
	}
	switch v.sender {
	case "":
		v.sender = "verify@" + o.Hostname
	case "<>":
		v.sender = ""
	}
	if v.met, err = newMetrics(o.Registry); err != nil {
		return nil, err
	}
	dir := c.JobsDir
	if dir == "" && o.DataDir != "" {
		dir = o.DataDir + "/verify-jobs"
	}
	if v.jobs, err = openJobStore(dir, v.log); err != nil {
		return nil, err
	}
	return v, nil
}

// Close stops running bulk jobs (they stay unfinished on disk).
func (v *Verifier) Close() error {
	v.jobs.closeAll()
	return nil
}

// Verify runs all four stages (the SMTP probe unless smtp_probe is off)
// for one address.
func (v *Verifier) Verify(ctx context.Context, addr string) Result {
	return v.verifyAll(ctx, []string{addr}, v.cfg.SMTPProbe, nil)[0]
}

// Quick runs syntax, domain and MX only (no SMTP session): cheap enough to
// call at ingest or audience import. Its verdict is Undeliverable when
// those stages prove the address cannot receive mail, Unknown when DNS
// could not answer, and otherwise Risky or Unknown with reason
// smtp_not_checked — never Deliverable, since no mailbox was asked.
func (v *Verifier) Quick(ctx context.Context, addr string) Result {
	return v.verifyAll(ctx, []string{addr}, false, nil)[0]
}

// RejectRecipient implements ingest.RecipientChecker (verify at ingest):
// it rejects addr only when Quick proves it undeliverable.
func (v *Verifier) RejectRecipient(ctx context.Context, addr string) (string, bool) {
	r := v.Quick(ctx, addr)
	if r.Verdict != Undeliverable {
		return "", false
	}
	return strings.Join(r.Reasons, ", "), true
}

// VerifyMany verifies addrs concurrently across domains (bulk_domains at
// once), one SMTP session probing up to rcpt_per_session addresses of the
// same domain. progress, if set, is called once per finished address
// (from several goroutines). Results are in input order.
func (v *Verifier) VerifyMany(ctx context.Context, addrs []string, progress func(i int, r Result)) []Result {
	return v.verifyAll(ctx, addrs, v.cfg.SMTPProbe, progress)
}

// work is one unit of bulk work: addresses of one domain that one SMTP
// session (or chain of sessions) will probe.
type work struct {
	domain string
	idx    []int
}

func (v *Verifier) verifyAll(ctx context.Context, addrs []string, probe bool, progress func(int, Result)) []Result {
	out := make([]Result, len(addrs))
	parsed := make([]Address, len(addrs))
	byDomain := map[string][]int{}
	var order []string
	done := func(i int) {
		v.finish(&out[i])
		if probe {
			v.met.verdicts.WithLabelValues(string(out[i].Verdict)).Inc()
		}
		if progress != nil {
			progress(i, out[i])
		}
	}
	for i, s := range addrs {
		r := &out[i]
		r.Address = s
		a, err := ParseAddress(s)
		if err != nil {
			var se *SyntaxError
			errors.As(err, &se)
			r.Stages.Syntax = SyntaxStage{Error: se.Reason, Detail: se.Detail}
			r.Stages.Domain.Status, r.Stages.MX.Status, r.Stages.SMTP.Status = StatusSkipped, StatusSkipped, StatusSkipped
			done(i)
			continue
		}
		parsed[i] = a
		r.Normalized = a.Normalized
		r.Stages.Syntax = SyntaxStage{Valid: true, Parsed: &parsed[i]}
		if probe {
			if c, ok := v.results.get(cacheKey(a), v.now()); ok {
				c.Address, c.Cached = s, true
				*r = c
				if progress != nil {
					progress(i, *r)
				}
				continue
			}
		}
		if a.Literal {
			r.Stages.Domain.Status, r.Stages.MX.Status, r.Stages.SMTP.Status = StatusLiteral, StatusSkipped, StatusSkipped
			done(i)
			continue
		}
		if _, seen := byDomain[a.Domain]; !seen {
			order = append(order, a.Domain)
		}
		byDomain[a.Domain] = append(byDomain[a.Domain], i)
	}
	// Split domains into units of at most rcpt_per_session addresses,
	// handed out round-robin across domains so one big domain (whose
	// provider limits hold its units back) does not occupy every worker.
	units := make(chan work)
	go func() {
		defer close(units)
		rest := make([][]int, len(order))
		for k, d := range order {
			rest[k] = byDomain[d]
		}
		for left := len(order); left > 0; {
			left = 0
			for k, d := range order {
				idx := rest[k]
				if len(idx) == 0 {
					continue
				}
				n := min(len(idx), v.cfg.RcptPerSession)
				select {
				case units <- work{domain: d, idx: idx[:n]}:
				case <-ctx.Done():
					return
				}
				rest[k] = idx[n:]
				if len(rest[k]) > 0 {
					left++
				}
			}
		}
	}()
	workers := min(v.cfg.BulkDomains, max(1, len(order)))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range units {
				v.runUnit(ctx, u, parsed, out, probe)
				for _, i := range u.idx {
					done(i)
				}
			}
		}()
	}
	wg.Wait()
	// Units never started (context ended) still get an answer.
	for _, d := range order {
		for _, i := range byDomain[d] {
			if out[i].Verdict == "" {
				r := &out[i]
				r.Stages.Domain = DomainStage{Status: StatusTemporary, Detail: "not checked: " + errString(ctx.Err())}
				r.Stages.MX.Status, r.Stages.SMTP.Status = StatusSkipped, StatusSkipped
				done(i)
			}
		}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "cancelled"
	}
	return err.Error()
}

func cacheKey(a Address) string { return strings.ToLower(a.Normalized) }

// runUnit runs the domain, MX and SMTP stages for one unit.
func (v *Verifier) runUnit(ctx context.Context, u work, parsed []Address, out []Result, probe bool) {
	di := v.domainInfo(ctx, u.domain)
	for _, i := range u.idx {
		out[i].Stages.Domain = di.domain
		out[i].Stages.MX = di.mx
		out[i].Stages.SMTP.Status = StatusSkipped
	}
	if di.mx.Status != StatusOK && di.mx.Status != StatusImplicit {
		return
	}
	if !probe {
		for _, i := range u.idx {
			out[i].Stages.SMTP.Status = StatusNotConfigured
		}
		return
	}
	addrs := make([]Address, len(u.idx))
	for k, i := range u.idx {
		addrs[k] = parsed[i]
	}
	ca, known := v.catchAll.get(u.domain, v.now())
	// One unit per domain runs the catch-all test; units of the same
	// domain in other sessions at the same time wait for its answer.
	test, wait := false, (chan struct{})(nil)
	if !known {
		test, wait = v.claimCatchAll(u.domain)
	}
	start := time.Now()
	b := v.probeBatch(ctx, u.domain, di.mx.Hosts, addrs, test)
	v.met.probeSeconds.Observe(time.Since(start).Seconds())
	if test {
		if b.CatchAll != nil {
			ca, known = *b.CatchAll, true
			v.catchAll.put(u.domain, ca, v.now().Add(v.cfg.DomainCacheTTL.Duration))
		}
		v.releaseCatchAll(u.domain)
	} else if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		}
		ca, known = v.catchAll.get(u.domain, v.now())
	}
	for k, i := range u.idx {
		a := addrs[k]
		s := &out[i].Stages.SMTP
		s.Host = b.Host
		if known {
			c := ca
			s.CatchAll = &c
		}
		if b.UTF8Unsupported[a.Normalized] {
			s.Status = StatusNotSupported
			s.Detail = "MX host does not offer SMTPUTF8"
			continue
		}
		if f, failed := b.Failed[a.Normalized]; failed {
			if r, got := b.Replies[a.Normalized]; got {
				// A greylist retry failed at the session level; the
				// earlier reply is the better evidence.
				v.fillReply(s, r)
			} else {
				s.Status, s.Detail = f.Kind, f.Detail
				s.Code, s.Enhanced, s.Message = f.Reply.Code, f.Reply.Enhanced, f.Reply.Text
			}
			s.Attempts = b.Attempts[a.Normalized]
			continue
		}
		v.fillReply(s, b.Replies[a.Normalized])
		s.Attempts = b.Attempts[a.Normalized]
	}
}

// claimCatchAll makes the caller the one to test domain for catch-all
// (test true) unless another caller is testing it now; then wait is closed
// when that test ends.
func (v *Verifier) claimCatchAll(domain string) (test bool, wait chan struct{}) {
	v.caMu.Lock()
	defer v.caMu.Unlock()
	if ch, ok := v.caTesting[domain]; ok {
		return false, ch
	}
	v.caTesting[domain] = make(chan struct{})
	return true, nil
}

// releaseCatchAll ends the caller's catch-all test of domain.
func (v *Verifier) releaseCatchAll(domain string) {
	v.caMu.Lock()
	defer v.caMu.Unlock()
	close(v.caTesting[domain])
	delete(v.caTesting, domain)
}

func (v *Verifier) fillReply(s *SMTPStage, r reply) {
	s.Code, s.Enhanced, s.Message = r.Code, r.Enhanced, r.Text
	switch r.Code / 100 {
	case 2:
		s.Status = StatusAccepted
	case 4:
		s.Status = StatusTemporary
		s.Category = classify(r).Reason
	default:
		s.Status = StatusRejected
		s.Category = classify(r).Reason
	}
}

// finish sets flags, suggestion, verdict and reasons from the stages, and
// caches a decided result.
func (v *Verifier) finish(r *Result) {
	r.CheckedAt = v.now().UTC()
	if r.Stages.Syntax.Valid {
		a := r.Stages.Syntax.Parsed
		r.Flags.Disposable = v.lists.Disposable(a.Domain)
		r.Flags.FreeProvider = !r.Flags.Disposable && v.lists.Free(a.Domain)
		r.Flags.Role = v.lists.Role(a.Local)
		if !a.Literal {
			r.Suggestion = v.lists.Suggest(a.Domain)
		}
	}
	r.Verdict, r.Reasons = decide(r)
	// A verdict is cached only when it rests on a definite answer: not
	// on a 4xx (a full mailbox today, a server condition, a limit), which
	// may be gone on the next try.
	if r.Stages.SMTP.Status != StatusSkipped && r.Stages.SMTP.Status != StatusNotConfigured &&
		r.Stages.SMTP.Status != StatusTemporary && r.Stages.SMTP.Code/100 != 4 &&
		r.Verdict != Unknown && r.Stages.Syntax.Valid {
		v.results.put(cacheKey(*r.Stages.Syntax.Parsed), *r, v.now().Add(v.cfg.AddressCacheTTL.Duration))
	}
}

// String renders a one-line summary (used by logs and petrelctl).
func (r Result) String() string {
	return fmt.Sprintf("%s: %s (%s)", r.Address, r.Verdict, strings.Join(r.Reasons, ", "))
}
