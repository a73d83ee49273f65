package campaign

// The send engine. Exactly once per (campaign, contact), across kill -9:
//
//  1. Recipients are read in pages, in ascending contact id, after the
//     campaign's durable cursor (Progress).
//  2. Each page is rendered and handed to ingest's entry point in ONE
//     SubmitBatch: one synced commit for the page, every message carrying
//     the idempotency key "campaign:<campaign>:<contact>", which the
//     spool stores with the message and never stores twice.
//  3. Only after that commit is the cursor (and the counters) saved.
//
// A crash before (2) commits loses nothing (the page is read again); a
// crash between (2) and (3) resubmits the page, and the idempotency keys
// make every message of it a no-op: no contact is skipped and none is
// mailed twice. Counters of a resubmitted page are recomputed from the
// same page, so they stay exact too.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/httpapi"
)

// Recipient is one contact a campaign may send to.
type Recipient struct {
	// ID orders recipients (ascending) and makes the idempotency key.
	ID    int64
	Email string
	Name  string
	// Values personalise the template (%field%).
	Values Values
	// Skip, when not "", is why the contact is not mailed (unsubscribed,
	// no_consent, erased, ...): counted, never sent.
	Skip string
	// Pass marks a contact another run of the campaign mails (the other
	// phase of an A/B test): the cursor moves over it, nothing counts.
	Pass bool
}

// Source pages through a campaign's recipients: up to limit with ID >
// after, in ascending ID order. An empty page ends the campaign.
type Source interface {
	Page(ctx context.Context, after int64, limit int) ([]Recipient, error)
}

// State is a campaign's durable progress.
type State struct {
	// After is the last contact ID whose page was committed.
	After int64 `json:"after"`
	// Sent counts messages handed to ingest; Skipped counts by reason
	// (including ingest's refusals, e.g. "suppressed").
	Sent    int64            `json:"sent"`
	Skipped map[string]int64 `json:"skipped,omitempty"`
	Done    bool             `json:"done"`
	// Winner is an A/B test's chosen variant (in its <id>#ab record).
	Winner string `json:"winner,omitempty"`
}

// Progress stores campaign states durably.
type Progress interface {
	Load(ctx context.Context, campaign string) (State, error)
	Save(ctx context.Context, campaign string, st State) error
}

// Submitter is ingest's batch entry point (*ingest.Submitter).
type Submitter interface {
	SubmitBatch(ctx context.Context, subs []ingest.Submission) ([]ingest.Receipt, error)
}

// Send describes one campaign send.
type Send struct {
	// ID names the campaign (idempotency keys, X-Petrel-Campaign,
	// events and stats).
	ID string
	// ProgressKey is where the cursor is kept (default ID; the phases of
	// an A/B test have their own).
	ProgressKey string
	// Tag, when set, replaces ID as the campaign name of the envelope
	// and X-Petrel-Campaign (an A/B variant's stats), not in the
	// idempotency key.
	Tag string
	// Variant, when set, picks the Send (template, sender, tag) each
	// recipient gets.
	Variant  func(r Recipient) *Send
	Template *Compiled
	From     *mail.Address
	ReplyTo  *mail.Address
	// Stream is the sending stream ("marketing" when empty).
	Stream string
	// PageSize is how many recipients go into one commit (default 500).
	PageSize int
	// Rate limits messages per second (0: as fast as ingest commits).
	Rate float64
	// Extra header fields added to every message.
	Extra [][2]string
	// Unsubscribe gives a recipient's %unsubscribe_url%
	// (policy.Engine.UnsubscribeURL); nil leaves it empty.
	Unsubscribe func(stream, rcpt string) string
	// Stop, when closed, ends the send between pages (pause, cancel):
	// Run returns ErrStopped with the cursor saved after the last
	// committed page.
	Stop <-chan struct{}
	// Tracking, when set, rewrites links to click tokens and adds the
	// open pixel (track.go).
	Tracking *Tracking
	// Key, when set, is the API key the send is under: every message
	// carries its limits (Submit refuses what they do not allow) and its
	// name in the trace.
	Key *httpapi.Key
	// Guard, when set, is asked before every page; an error ends the
	// send (Run returns it in a *GuardError), e.g. the sending domain
	// no longer verified.
	Guard func() error
}

// GuardError is a Send's Guard refusing the next page.
type GuardError struct{ Err error }

func (e *GuardError) Error() string { return "campaign paused: " + e.Err.Error() }

func (e *GuardError) Unwrap() error { return e.Err }

// Engine runs sends. It is safe for concurrent use by different
// campaigns (one Run per campaign at a time).
type Engine struct {
	Submitter Submitter
	Progress  Progress
	Logger    *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// ErrStopped is returned by Run when the Send's Stop was closed.
var ErrStopped = errors.New("campaign: send stopped")

// ErrNoTemplate is returned by Run for a Send without a template.
var ErrNoTemplate = errors.New("campaign: send has no template")

// IdempotencyKey is the spool key of (campaign, contact).
func IdempotencyKey(campaign string, contact int64) string {
	return "campaign:" + campaign + ":" + strconv.FormatInt(contact, 10)
}

// Run sends s to every recipient of src after its saved cursor, page by
// page, until src is exhausted (then the state is saved Done) or ctx
// ends. It returns the final state.
func (e *Engine) Run(ctx context.Context, s Send, src Source) (State, error) {
	if s.Template == nil {
		return State{}, ErrNoTemplate
	}
	if s.From == nil {
		return State{}, errors.New("campaign: send has no From")
	}
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := e.Now
	if now == nil {
		now = time.Now
	}
	page := s.PageSize
	if page <= 0 {
		page = 500
	}
	stream := s.Stream
	if stream == "" {
		stream = "marketing"
	}
	key := s.ProgressKey
	if key == "" {
		key = s.ID
	}
	st, err := e.Progress.Load(ctx, key)
	if err != nil {
		return st, fmt.Errorf("campaign %s: load progress: %w", s.ID, err)
	}
	if st.Done {
		return st, nil
	}
	if st.Skipped == nil {
		st.Skipped = map[string]int64{}
	}
	var pace *time.Ticker
	if s.Rate > 0 {
		pace = time.NewTicker(time.Duration(float64(time.Second) * float64(page) / s.Rate))
		defer pace.Stop()
	}
	// Two stages on two goroutines: the next page is read and rendered
	// while this one is handed to ingest and committed. The cursor still
	// moves only after a page's commit, in page order, so a crash or a
	// stop loses at most the prepared page, which is read again.
	pctx, cancel := context.WithCancel(ctx)
	pages := make(chan preparedPage)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.prepare(pctx, &s, src, st.After, page, stream, now, log, pages)
	}()
	defer func() { cancel(); <-done }()
	for {
		var pp preparedPage
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case pp = <-pages:
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		select {
		case <-s.Stop:
			log.Info("campaign send stopped", "campaign", s.ID, "after", st.After, "sent", st.Sent)
			return st, ErrStopped
		default:
		}
		if pp.err != nil {
			return st, pp.err
		}
		if pp.last == 0 {
			st.Done = true
			if err := e.Progress.Save(ctx, key, st); err != nil {
				return st, fmt.Errorf("campaign %s: save progress: %w", s.ID, err)
			}
			log.Info("campaign sent", "campaign", s.ID, "sent", st.Sent, "skipped", st.Skipped)
			return st, nil
		}
		next := st
		next.After = pp.last
		next.Skipped = make(map[string]int64, len(st.Skipped)+len(pp.skipped))
		for k, v := range st.Skipped {
			next.Skipped[k] = v
		}
		for k, v := range pp.skipped {
			next.Skipped[k] += v
		}
		if len(pp.subs) > 0 {
			rcs, err := e.Submitter.SubmitBatch(ctx, pp.subs)
			if err != nil {
				return st, fmt.Errorf("campaign %s: submit: %w", s.ID, err)
			}
			for _, rc := range rcs {
				switch {
				case rc.Err == nil:
					next.Sent++
				case errors.Is(rc.Err, ingest.ErrAllSuppressed):
					next.Skipped["suppressed"]++
				default:
					next.Skipped["refused"]++
					log.Warn("campaign: message refused by ingest", "campaign", s.ID, "err", rc.Err)
				}
			}
		}
		if err := e.Progress.Save(ctx, key, next); err != nil {
			return st, fmt.Errorf("campaign %s: save progress: %w", s.ID, err)
		}
		st = next
		if pace != nil {
			select {
			case <-ctx.Done():
				return st, ctx.Err()
			case <-s.Stop:
			case <-pace.C:
			}
		}
	}
}

// maxPageBytes bounds the messages of one page (one commit): a page
// ends at PageSize recipients or this many bytes of messages.
const maxPageBytes = 8 << 20

// preparedPage is one page of recipients read and rendered: the
// submissions, the skips by reason and the last contact id (0: the
// source is exhausted), or the error that ends the send.
type preparedPage struct {
	subs    []ingest.Submission
	skipped map[string]int64
	last    int64
	err     error
}

// prepare reads and renders the pages of s after the cursor after into
// out, until the source is exhausted (a page with last 0), an error, a
// stop or ctx's end. The Guard is asked before every page is read.
func (e *Engine) prepare(ctx context.Context, s *Send, src Source, after int64, page int, stream string, now func() time.Time, log *slog.Logger, out chan<- preparedPage) {
	// Tracking is compiled into each template once (tracked.go).
	tracked := map[*Send]*trackedTemplate{}
	trackedOf := func(rs *Send) *trackedTemplate {
		tt, ok := tracked[rs]
		if !ok {
			unsubHTTP := rs.Unsubscribe != nil && hasHTTPScheme(rs.Unsubscribe(stream, rs.From.Address))
			tt = rs.Tracking.precompile(rs.Template, rs.From.Address, unsubHTTP)
			tracked[rs] = tt
		}
		return tt
	}
	send := func(pp preparedPage) bool {
		select {
		case out <- pp:
			return pp.err == nil && pp.last != 0
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-s.Stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if s.Guard != nil {
			if err := s.Guard(); err != nil {
				send(preparedPage{err: &GuardError{Err: err}})
				return
			}
		}
		rs, err := src.Page(ctx, after, page)
		if err != nil {
			send(preparedPage{err: fmt.Errorf("campaign %s: recipients after %d: %w", s.ID, after, err)})
			return
		}
		pp := preparedPage{skipped: map[string]int64{}, subs: make([]ingest.Submission, 0, len(rs))}
		size := 0
		for i, r := range rs {
			if size >= maxPageBytes {
				// The page is full by size: the rest is read again as the
				// next page, and pages are this long from now on (large
				// messages make smaller pages, so memory stays flat
				// whatever the page size and the rate).
				page = i
				break
			}
			if r.ID <= after {
				send(preparedPage{err: fmt.Errorf("campaign %s: source returned contact %d, not after %d", s.ID, r.ID, after)})
				return
			}
			after, pp.last = r.ID, r.ID
			if r.Pass {
				continue
			}
			if r.Skip != "" {
				pp.skipped[r.Skip]++
				continue
			}
			rs := s
			if s.Variant != nil {
				rs = s.Variant(r)
			}
			msg, err := rs.build(r, stream, now(), trackedOf(rs))
			if err != nil {
				pp.skipped["render_error"]++
				log.Warn("campaign: message not built", "campaign", s.ID, "contact", r.ID, "err", err)
				continue
			}
			pp.subs = append(pp.subs, ingest.Submission{Envelope: rs.keyed(ingest.Envelope{
				From: rs.From.Address, Rcpts: []string{r.Email}, Stream: stream, Campaign: rs.tag(), Source: "campaign",
				IdempotencyKey: IdempotencyKey(s.ID, r.ID), Trace: ingest.Trace{Helo: "campaign " + s.ID, With: "campaign"},
			}), Body: msg})
			size += len(msg)
		}
		if !send(pp) {
			return
		}
	}
}

// tag is the campaign name on the envelope and in X-Petrel-Campaign.
func (s *Send) tag() string {
	if s.Tag != "" {
		return s.Tag
	}
	return s.ID
}

// build renders the message for r, tracked when s.Tracking says so:
// from tt, s's template with tracking compiled in, or (tt nil) by
// rewriting the rendered message.
func (s Send) build(r Recipient, stream string, now time.Time, tt *trackedTemplate) ([]byte, error) {
	if tt != nil && !plainValues(r.Values) {
		tt = nil // the HTML parser would change such a value (NUL, invalid UTF-8): rewrite this one as a whole
	}
	if tt != nil {
		vals, unsub := s.values(r, stream)
		rendered, ok := tt.render(vals, s.tag(), IdempotencyKey(s.ID, r.ID), r, stream, unsub, now,
			func() string { return s.Template.text.render(vals, textSafe) })
		if ok {
			return s.message(r, rendered, now)
		}
	}
	rendered, unsub := s.render(r, stream)
	if err := s.Tracking.apply(&rendered, s.tag(), IdempotencyKey(s.ID, r.ID), r, stream, s.From.Address, unsub, now); err != nil {
		return nil, err
	}
	return s.message(r, rendered, now)
}

// render personalises the template for r; unsub is its
// %unsubscribe_url%.
func (s Send) render(r Recipient, stream string) (rendered Rendered, unsub string) {
	vals, unsub := s.values(r, stream)
	return s.Template.Render(vals), unsub
}

// values are r's placeholder values with its %unsubscribe_url% (unsub).
func (s Send) values(r Recipient, stream string) (vals Values, unsub string) {
	vals = r.Values
	if s.Unsubscribe != nil {
		unsub = s.Unsubscribe(stream, r.Email)
		vals = withValue{vals, "unsubscribe_url", unsub}
	}
	return vals, unsub
}

// message builds the MIME message of rendered for r.
func (s Send) message(r Recipient, rendered Rendered, now time.Time) ([]byte, error) {
	env := Envelope{
		From:  s.From,
		To:    []*mail.Address{{Name: r.Name, Address: r.Email}},
		Date:  now,
		Extra: append([][2]string{{"X-Petrel-Campaign", s.tag()}}, s.Extra...),
	}
	if s.ReplyTo != nil {
		env.ReplyTo = []*mail.Address{s.ReplyTo}
	}
	return BuildMessage(env, rendered)
}

// withValue is vals with one more field.
type withValue struct {
	Values
	name, value string
}

func (w withValue) Value(field string) (string, bool) {
	if field == w.name {
		return w.value, true
	}
	if w.Values == nil {
		return "", false
	}
	return w.Values.Value(field)
}

// plainValues reports whether every value of vals (when it is a Map) is
// valid UTF-8 without NUL: values the per-message HTML rewrite keeps as
// they are, so a precompiled tracked template gives the same message
// (FuzzPrecompiledTracking found a NUL turned into U+FFFD in a link).
func plainValues(vals Values) bool {
	m, ok := vals.(Map)
	if !ok {
		return true
	}
	for _, v := range m {
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}
