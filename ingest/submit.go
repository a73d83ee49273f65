package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/mta"
)

// DefaultHopCountLimit is the most Received plus Delivered-To fields a
// message may carry when it enters (Postfix's hopcount_limit).
const DefaultHopCountLimit = 50

// Envelope is a message's envelope and origin as it enters Submit.
type Envelope struct {
	// From is the envelope sender (MAIL FROM); "" is the null sender.
	From string
	// Rcpts are the envelope recipients.
	Rcpts []string
	// Stream chosen so far (SMTP user's, API key's or request's); ""
	// means DefaultStream.
	Stream string
	// HeaderStream lets the message's X-Petrel-Stream field override
	// Stream. The field is removed from every message either way.
	HeaderStream bool
	Tenant       string
	Campaign     string
	// Source says how the message arrived: "smtp", "http", "dsn",
	// "campaign"...; it becomes the queue's Source.
	Source string
	// Trace describes the client in the Received field.
	Trace Trace
	// CheckedStream, when set, says the recipients were checked for
	// suppression in that stream already (SMTP answers RCPT early):
	// Submit checks them again only when the message ends up in another
	// stream (X-Petrel-Stream), so each recipient is checked once.
	CheckedStream string
	// Verified says the recipients passed the RecipientChecker already.
	Verified bool
	// RemoveBcc drops every Bcc field from the message (HTTP injection:
	// the envelope, not the header, names the Bcc recipients).
	RemoveBcc bool
	// Generated marks mail Petrel made itself (DSNs): no sender-domain
	// check and no List-Unsubscribe; suppression still applies.
	Generated bool
	// ListUnsubscribe overrides whether policy adds List-Unsubscribe: nil
	// follows the stream ([sending] list_unsubscribe_streams), true adds
	// it in any stream, false never (an API message's unsubscribe
	// tracking setting).
	ListUnsubscribe *bool
	// IdempotencyKey makes the enqueue happen at most once per key (see
	// mta.NewMessage): a repeat gets the first message's ID and is not
	// stored again. The campaign engine uses "campaign:contact".
	IdempotencyKey string
	// OnlyStream, when set, is the one stream the message may be queued
	// in (a database API key's): a request, template or X-Petrel-Stream
	// field naming another stream is refused with a *ScopeError.
	OnlyStream string
	// SenderDomains, when not empty, are the only sending domains the
	// submitter may use (a database API key's): the From field's domain
	// and the envelope sender's must each be one of them or a subdomain
	// of one, or Submit refuses with a *ScopeError.
	SenderDomains []string
}

// Trace is what the Received field says about the client.
type Trace struct {
	// Helo is the client's EHLO name (or "api-key=NAME"); "" with IP ""
	// renders no "from" clause (locally generated mail).
	Helo, IP string
	// With is the protocol: ESMTP, ESMTPSA, HTTP, HTTPS, ...
	With string
	// ID is the trace id (random when "").
	ID string
}

// Submission is one message of a SubmitBatch.
type Submission struct {
	Envelope Envelope
	Body     []byte
}

// Receipt says what Submit did with each recipient of a message.
type Receipt struct {
	// ID is the queue ID ("" when nothing was queued).
	ID string
	// Stream is the stream the message was (or would have been) queued in.
	Stream string
	// Queued are the recipients queued.
	Queued []string
	// Suppressed maps suppressed recipients to the reason.
	Suppressed map[string]string
	// Rejected maps recipients refused by address verification to the
	// reason.
	Rejected map[string]string
	// Err is, in SubmitBatch's answer, why this message was not queued
	// (the same errors Submit returns); nil when it was.
	Err error
}

// Refusals Submit returns; SMTP and HTTP map them to protocol replies.
var (
	// ErrBadHeader: the header section is not RFC 5322.
	ErrBadHeader = mta.ErrBadHeader
	// ErrBadStream: the stream name is invalid.
	ErrBadStream = errors.New("invalid stream name")
	// ErrAllSuppressed: no recipient may be queued (suppressed or
	// rejected by verification); nothing was queued.
	ErrAllSuppressed = errors.New("all recipients are suppressed")
	// ErrLoop: the message has more Received/Delivered-To fields than the
	// hop count limit (a mail loop).
	ErrLoop = errors.New("routing loop detected: too many Received headers")
	// ErrNUL: the message contains a NUL byte.
	ErrNUL = errors.New("message contains a NUL byte")
)

// SenderError is a Policy.CheckSender refusal.
type SenderError struct{ Err error }

func (e *SenderError) Error() string { return e.Err.Error() }
func (e *SenderError) Unwrap() error { return e.Err }

// ScopeError is a refusal by the credential's own limits (Envelope's
// OnlyStream and SenderDomains): the key may not send this message at all
// (HTTP 403, SMTP 550 5.7.1). Field is "stream" or "domain".
type ScopeError struct {
	Field, Value string
	Allowed      []string
}

func (e *ScopeError) Error() string {
	if e.Field == "stream" {
		return fmt.Sprintf("this API key may send only in stream %s, not %s", strings.Join(e.Allowed, ", "), e.Value)
	}
	return fmt.Sprintf("this API key may not send from domain %q (its sending domains: %s)", e.Value, strings.Join(e.Allowed, ", "))
}

// LimitTo makes e carry key's limits (a database key's stream and
// sending domains, httpapi.Key.StreamOnly and Domains): Submit refuses a
// message they do not allow with a *ScopeError. A configured key limits
// nothing.
func (e *Envelope) LimitTo(key httpapi.Key) {
	e.SenderDomains = key.Domains
	if key.StreamOnly {
		e.OnlyStream = cmp.Or(key.Stream, DefaultStream)
	}
}

// CheckScope is Submit's check of e's key limits (OnlyStream,
// SenderDomains) for a message in stream whose From field is headerFrom
// ("" when absent): a *ScopeError, or nil when they allow it. Callers
// that refuse early (the campaign service, before a send is scheduled)
// use it so they refuse exactly what Submit would.
func CheckScope(e Envelope, stream, headerFrom string) error {
	return checkScope(e, strings.ToLower(stream), headerFrom)
}

// checkScope applies env's OnlyStream and SenderDomains to the message's
// final stream and its From field (m.From, "" when absent).
func checkScope(env Envelope, stream, headerFrom string) error {
	if env.OnlyStream != "" && stream != strings.ToLower(env.OnlyStream) {
		return &ScopeError{Field: "stream", Value: stream, Allowed: []string{env.OnlyStream}}
	}
	if len(env.SenderDomains) == 0 {
		return nil
	}
	if headerFrom == "" && env.From == "" {
		return &ScopeError{Field: "domain", Value: "", Allowed: env.SenderDomains}
	}
	for _, a := range []string{headerFrom, env.From} {
		if a == "" {
			continue
		}
		if d := domainOf(a); !domainAllowed(d, env.SenderDomains) {
			return &ScopeError{Field: "domain", Value: d, Allowed: env.SenderDomains}
		}
	}
	return nil
}

// domainAllowed reports whether d is one of list or a subdomain of one
// (both lower case, without a trailing dot).
func domainAllowed(d string, list []string) bool {
	d = strings.TrimSuffix(d, ".")
	for _, a := range list {
		a = strings.TrimSuffix(strings.ToLower(a), ".")
		if d != "" && (d == a || strings.HasSuffix(d, "."+a)) {
			return true
		}
	}
	return false
}

// TemporaryError is a failure the client should retry later
// (Policy.Prepare or the queue commit failed); nothing was queued.
type TemporaryError struct{ Err error }

func (e *TemporaryError) Error() string { return e.Err.Error() }
func (e *TemporaryError) Unwrap() error { return e.Err }

// Spool is where Submit commits (*queue.Queue implements it). It is
// defined here, by its user, so ingest does not import the queue.
type Spool interface {
	// EnqueueBatch stores the messages in ONE synced batch (all or none)
	// and returns their IDs in order. Below the spool's free-space reserve
	// it fails with an error wrapping mta.ErrInsufficientStorage.
	EnqueueBatch(ctx context.Context, msgs []mta.NewMessage) ([]string, error)
}

// idempotencyLookup is optionally implemented by a Spool (*queue.Queue):
// the ID a message with an idempotency key was enqueued as.
type idempotencyLookup interface {
	Idempotent(key string) (id string, ok bool, err error)
}

// repeat returns the receipt of an already enqueued message with env's
// idempotency key, so a repeat answers what the first submission did
// without running policy again (a recipient suppressed in between must
// not make a message that was sent look skipped).
func (s *Submitter) repeat(env Envelope) (Receipt, bool, error) {
	l, ok := s.spool.(idempotencyLookup)
	if env.IdempotencyKey == "" || !ok {
		return Receipt{}, false, nil
	}
	id, ok, err := l.Idempotent(env.IdempotencyKey)
	if err != nil || !ok {
		return Receipt{}, false, err
	}
	return Receipt{ID: id, Stream: cmp.Or(env.Stream, DefaultStream), Queued: env.Rcpts}, true, nil
}

// spaceChecker is optionally implemented by a Spool (*queue.Queue).
type spaceChecker interface {
	// CheckSpace returns an error wrapping mta.ErrInsufficientStorage
	// while new mail is refused.
	CheckSpace() error
}

// SubmitOptions configure NewSubmitter.
type SubmitOptions struct {
	// Hostname is the "by" of Received fields and the domain of
	// generated Message-IDs.
	Hostname string
	// Spool is where messages are committed (required for Submit and
	// SubmitBatch; Prepare needs none).
	Spool Spool
	// Policy may be nil: accept everything, sign nothing.
	Policy Policy
	// Recipients, if set, vets each recipient (verify at ingest).
	Recipients RecipientChecker
	// HopCountLimit: more Received plus Delivered-To fields than this
	// refuse the message (ErrLoop); 0 means DefaultHopCountLimit,
	// negative means no limit.
	HopCountLimit int
	// Logger may be nil (slog.Default()).
	Logger *slog.Logger
	// Registry may be nil (no metrics).
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Submitter is ingest's one entry point: SMTP submission, HTTP injection,
// DSNs and the campaign engine all enqueue mail through Submit,
// SubmitBatch or (for a caller that commits inside its own batch)
// Prepare. Its methods are safe for concurrent use.
type Submitter struct {
	hostname string
	spool    Spool
	policy   Policy
	checker  RecipientChecker
	hops     int
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
	// parses counts header parses (tests assert one per message).
	parses atomic.Int64
}

// NewSubmitter builds a Submitter.
func NewSubmitter(o SubmitOptions) *Submitter {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HopCountLimit == 0 {
		o.HopCountLimit = DefaultHopCountLimit
	}
	return &Submitter{hostname: o.Hostname, spool: o.Spool, policy: o.Policy, checker: o.Recipients,
		hops: o.HopCountLimit, log: o.Logger.With("component", "ingest"), now: o.Now, m: newMetrics(o.Registry)}
}

// Submit runs one message through ingest and commits it: it refuses NUL
// bytes, parses the header once into an index, refuses mail loops
// (HopCountLimit), picks the stream, checks suppression (once per
// recipient) and address verification, checks the sender domain, adds
// Received (and Message-ID/Date when missing), lets Policy add
// List-Unsubscribe and DKIM-sign over the result, and enqueues it in one
// synced commit. A nil error means the message is durable. body is not
// kept: the caller may reuse it once Submit returned.
func (s *Submitter) Submit(ctx context.Context, env Envelope, body []byte) (Receipt, error) {
	if rc, ok, err := s.repeat(env); err != nil {
		return rc, &TemporaryError{err}
	} else if ok {
		return rc, nil
	}
	nm, rc, err := s.Prepare(ctx, env, body)
	if err != nil {
		return rc, err
	}
	if s.spool == nil {
		return rc, &TemporaryError{errors.New("ingest: no spool")}
	}
	ids, err := s.spool.EnqueueBatch(ctx, []mta.NewMessage{nm})
	if err != nil {
		return rc, &TemporaryError{fmt.Errorf("enqueue: %w", err)}
	}
	rc.ID = ids[0]
	s.logQueued(nm, rc, env)
	return rc, nil
}

// SubmitBatch runs every submission through the steps of Submit and
// commits the accepted ones in ONE synced batch (the campaign engine's
// path). A message refused by policy (suppressed, bad header, loop...)
// gets its Receipt.Err and does not stop the others; a commit failure
// returns an error and queues none of them. The returned receipts are
// in the order of subs.
func (s *Submitter) SubmitBatch(ctx context.Context, subs []Submission) ([]Receipt, error) {
	rcs := make([]Receipt, len(subs))
	msgs := make([]mta.NewMessage, 0, len(subs))
	idx := make([]int, 0, len(subs))
	for i, sub := range subs {
		if rc, ok, err := s.repeat(sub.Envelope); err != nil {
			return nil, &TemporaryError{err}
		} else if ok {
			rcs[i] = rc
			continue
		}
		nm, rc, err := s.Prepare(ctx, sub.Envelope, sub.Body)
		var temp *TemporaryError
		if errors.As(err, &temp) {
			return nil, err
		}
		rc.Err = err
		rcs[i] = rc
		if err == nil {
			msgs = append(msgs, nm)
			idx = append(idx, i)
		}
	}
	if len(msgs) == 0 {
		return rcs, nil
	}
	if s.spool == nil {
		return nil, &TemporaryError{errors.New("ingest: no spool")}
	}
	ids, err := s.spool.EnqueueBatch(ctx, msgs)
	if err != nil {
		return nil, &TemporaryError{fmt.Errorf("enqueue batch: %w", err)}
	}
	for k, i := range idx {
		rcs[i].ID = ids[k]
		s.logQueued(msgs[k], rcs[i], subs[i].Envelope)
	}
	return rcs, nil
}

func (s *Submitter) logQueued(nm mta.NewMessage, rc Receipt, env Envelope) {
	s.log.Info("message queued", "source", env.Source, "id", rc.ID, "from", env.From,
		"rcpts", len(rc.Queued), "suppressed", len(rc.Suppressed), "stream", rc.Stream, "size", nm.Len(), "trace_id", env.Trace.ID)
}

// Prepare is Submit without the commit: it returns the final message for
// a caller that commits it inside its own batch (the queue's DSN hook,
// which must commit a DSN with the bounce that caused it). The returned
// message's Parts point into body, which must not change until the
// message is committed.
func (s *Submitter) Prepare(ctx context.Context, env Envelope, body []byte) (mta.NewMessage, Receipt, error) {
	if bytes.IndexByte(body, 0) >= 0 {
		return mta.NewMessage{}, Receipt{}, ErrNUL
	}
	s.parses.Add(1)
	m, err := mta.ParseMessage(body)
	if err != nil {
		return mta.NewMessage{}, Receipt{}, err
	}
	if hops := m.Count("Received") + m.Count("Delivered-To"); s.hops > 0 && hops > s.hops {
		return mta.NewMessage{}, Receipt{}, fmt.Errorf("%w (%d, the limit is %d)", ErrLoop, hops, s.hops)
	}
	stream := env.Stream
	if env.HeaderStream {
		if v, ok := m.Get(StreamHeader); ok {
			stream = strings.ToLower(v)
		}
	}
	if stream == "" {
		stream = DefaultStream
	}
	rc := Receipt{Stream: stream}
	if !validStream(stream) {
		return mta.NewMessage{}, rc, fmt.Errorf("%w: %q", ErrBadStream, stream)
	}
	if err := checkScope(env, stream, m.From); err != nil {
		return mta.NewMessage{}, rc, err
	}
	m.Remove(StreamHeader)
	if env.RemoveBcc {
		m.Remove("Bcc")
	}
	for _, r := range env.Rcpts {
		if stream != env.CheckedStream {
			if reason, ok := s.suppressed(stream, r); ok {
				if rc.Suppressed == nil {
					rc.Suppressed = map[string]string{}
				}
				rc.Suppressed[r] = reason
				continue
			}
		}
		if !env.Verified {
			if reason, ok := s.rejected(ctx, r); ok {
				if rc.Rejected == nil {
					rc.Rejected = map[string]string{}
				}
				rc.Rejected[r] = reason
				continue
			}
		}
		rc.Queued = append(rc.Queued, r)
	}
	if len(rc.Queued) == 0 {
		return mta.NewMessage{}, rc, ErrAllSuppressed
	}
	if s.policy != nil && !env.Generated {
		dom := domainOf(m.From)
		if dom == "" {
			dom = domainOf(env.From)
		}
		if dom != "" {
			if err := s.policy.CheckSender(ctx, dom); err != nil {
				return mta.NewMessage{}, rc, &SenderError{err}
			}
		}
	}
	t := traceInfo{helo: env.Trace.Helo, ip: env.Trace.IP, with: env.Trace.With, id: env.Trace.ID, by: s.hostname, date: s.now()}
	if t.id == "" {
		t.id = newID(6)
	}
	if len(rc.Queued) == 1 {
		t.rcpt = rc.Queued[0]
	}
	m.Prepend(t.received())
	if m.Count("Message-ID") == 0 {
		m.Insert(fmt.Sprintf("Message-ID: <%d.%s@%s>\r\n", t.date.UnixNano(), newID(8), safeToken(t.by)))
	}
	if m.Count("Date") == 0 {
		m.Insert("Date: " + t.date.Format(time.RFC1123Z) + "\r\n")
	}
	m.Sender, m.Rcpts, m.Stream, m.Generated, m.ListUnsubscribe = env.From, rc.Queued, stream, env.Generated, env.ListUnsubscribe
	if s.policy != nil {
		if err := s.policy.PrepareMessage(ctx, m); err != nil {
			return mta.NewMessage{}, rc, &TemporaryError{fmt.Errorf("prepare: %w", err)}
		}
	}
	qe := mta.Envelope{From: env.From, Recipients: rc.Queued, Stream: stream, Tenant: env.Tenant,
		Campaign: env.Campaign, Source: env.Source}
	// The pieces point into body and the added fields: the queue copies
	// them straight into its commit batch (the one copy Petrel makes).
	return mta.NewMessage{Envelope: qe, Parts: m.Parts(), IdempotencyKey: env.IdempotencyKey}, rc, nil
}

// suppressed asks the policy whether addr is suppressed in stream.
func (s *Submitter) suppressed(stream, addr string) (string, bool) {
	if s.policy == nil {
		return "", false
	}
	return s.policy.Suppressed(stream, addr)
}

// rejected asks the recipient checker (verify at ingest) about addr.
func (s *Submitter) rejected(ctx context.Context, addr string) (string, bool) {
	if s.checker == nil {
		return "", false
	}
	return s.checker.RejectRecipient(ctx, addr)
}

// domainOf returns the lower-cased part after the last "@", or "".
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// CheckSpace returns an error wrapping mta.ErrInsufficientStorage while
// the spool refuses new mail for lack of disk space, so SMTP (at MAIL
// FROM) and HTTP can refuse before reading a message. A spool that does
// not report its space never refuses.
func (s *Submitter) CheckSpace() error {
	if sc, ok := s.spool.(spaceChecker); ok {
		return sc.CheckSpace()
	}
	return nil
}
