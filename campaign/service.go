package campaign

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Spec is what a campaign sends and to whom.
type Spec struct {
	ID       string `json:"id"`
	Audience int64  `json:"audience"`
	// Segment is a CEL expression over the audience ("" = everyone).
	Segment string `json:"segment,omitempty"`
	// Tags, when set, sends only to contacts with one of these tags.
	Tags []string `json:"tags,omitempty"`
	// Exclude leaves contacts out: those whose address is in other
	// audiences, those with excluded tags, those matching saved segments.
	Exclude *Exclusions `json:"exclude,omitempty"`
	// Template is the call name of a stored template whose content the
	// campaign sends instead of inline content; TemplateVersion pins the
	// version (0 at creation: the latest, which is then stored), so
	// editing the template later never changes this campaign.
	Template        string `json:"template,omitempty"`
	TemplateVersion int64  `json:"template_version,omitempty"`
	Subject         string `json:"subject,omitempty"`
	Preheader       string `json:"preheader,omitempty"`
	HTML            string `json:"html,omitempty"`
	Text            string `json:"text,omitempty"`
	From            string `json:"from"`
	// APIKey names the database API key the campaign sends under (""
	// none): the key's stream and sending domains must allow the
	// campaign (refused at create, schedule and send otherwise), ingest
	// enforces them on every message, and the messages' trace names the
	// key. Stored in its own column (api_key).
	APIKey   string `json:"api_key,omitempty"`
	FromName string `json:"from_name,omitempty"`
	ReplyTo  string `json:"reply_to,omitempty"`
	// Stream is "marketing" when empty.
	Stream string `json:"stream,omitempty"`
	// RequireConsent (default true on the marketing stream) mails only
	// contacts with a marketing grant in the consent ledger.
	RequireConsent *bool `json:"require_consent,omitempty"`
	// PostalAddress is the sender's physical postal address, required on
	// the marketing stream (CAN-SPAM); it goes into the automatic footer.
	PostalAddress string  `json:"postal_address,omitempty"`
	PageSize      int     `json:"page_size,omitempty"`
	Rate          float64 `json:"rate,omitempty"`
	// TrackOpens and TrackClicks turn open and click tracking on or off
	// for this campaign; unset follows the From domain's tracking
	// settings (default on where petreld tracks).
	TrackOpens  *bool `json:"track_opens,omitempty"`
	TrackClicks *bool `json:"track_clicks,omitempty"`
	// UTM parameters added to the links to the landing domains (utm.go).
	UTM
	// Schedule, when set at creation, schedules the campaign at once.
	Schedule *Schedule `json:"schedule,omitempty"`
	// AB, when set, tests variants on a sample first (ab.go).
	AB *ABTest `json:"ab,omitempty"`
}

// Campaign statuses: draft → scheduled → sending ⇄ paused → sent, and
// cancelled (from draft, scheduled, sending or paused) or failed.
const (
	StatusDraft     = "draft"
	StatusScheduled = "scheduled"
	StatusSending   = "sending"
	StatusPaused    = "paused"
	StatusSent      = "sent"
	StatusCancelled = "cancelled"
	StatusFailed    = "failed"
)

func validStatus(s string) bool {
	switch s {
	case StatusDraft, StatusScheduled, StatusSending, StatusPaused, StatusSent, StatusCancelled, StatusFailed:
		return true
	}
	return false
}

// Campaign is a stored campaign with its status and progress.
type Campaign struct {
	Spec     Spec      `json:"spec"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Progress State     `json:"progress"`
	Created  time.Time `json:"created"`
	Times
	// Check is the last pre-send check (nil before the first).
	Check *CheckResult `json:"check,omitempty"`
	// AB is an A/B campaign's phases and winner (Progress sums them).
	AB *ABState `json:"ab,omitempty"`
}

// Times are a campaign's milestones (absent until reached).
type Times struct {
	// ScheduledAt is when a scheduled campaign starts.
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	// FinishedAt is when the send ended (sent, cancelled or failed).
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  *time.Time `json:"updated_at,omitempty"`
}

func unixTime(sec int64) *time.Time {
	if sec == 0 {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}

func timesOf(sendAt, started, finished, updated int64) Times {
	return Times{ScheduledAt: unixTime(sendAt), StartedAt: unixTime(started), FinishedAt: unixTime(finished), UpdatedAt: unixTime(updated)}
}

var campaignID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// templateFields are the placeholders every campaign may use besides the
// audience's custom fields.
var templateFields = []string{"email", "name", "first_name", "phone", "gender", "birthday", "age", "time_zone", "locale", "unsubscribe_url"}

// Service keeps campaigns in the ESP database and runs their sends, one
// goroutine per sending campaign; Start resumes the ones a previous
// process left sending.
type Service struct {
	aud    *audience.Store
	db     *sql.DB
	pg     bool
	prog   *SQLProgress
	engine *Engine
	sub    Submitter
	log    *slog.Logger
	unsub  func(stream, rcpt string) string

	opts Options

	wake chan struct{}

	mu sync.Mutex
	// running maps a campaign whose send runs to its stop channel.
	running map[string]chan struct{}
	wg      sync.WaitGroup
	ctx     context.Context
}

// NewService creates the campaigns table in aud's database. unsub gives a
// recipient's unsubscribe link (policy.Engine.UnsubscribeURL); marketing
// campaigns cannot be created without one.
func NewService(ctx context.Context, aud *audience.Store, sub Submitter, unsub func(stream, rcpt string) string, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := aud.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS campaigns (
		id      TEXT PRIMARY KEY,
		spec    TEXT NOT NULL,
		status  TEXT NOT NULL,
		error   TEXT NOT NULL DEFAULT '',
		created BIGINT NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("campaign: campaigns table: %w", err)
	}
	prog, err := NewSQLProgress(ctx, db, aud.Postgres())
	if err != nil {
		return nil, err
	}
	if err := migrateCampaigns(ctx, db, aud.Postgres()); err != nil {
		return nil, err
	}
	return &Service{aud: aud, db: db, pg: aud.Postgres(), prog: prog, log: log, unsub: unsub,
		engine: &Engine{Submitter: sub, Progress: prog, Logger: log}, running: map[string]chan struct{}{}, wake: make(chan struct{}, 1), sub: sub}, nil
}

// Options are the service's optional collaborators; set them with
// SetOptions before Start.
type Options struct {
	// Templates resolves Spec.Template (stored templates, pinned by
	// version); nil refuses campaigns that name a template.
	Templates *Templates
	// Check configures the pre-send check.
	Check CheckOptions
	// Tracking, when set, tracks opens and clicks of campaigns as their
	// From domain's settings say (Tracking.Defaults) unless the campaign
	// sets its own (Spec.TrackOpens, Spec.TrackClicks); its Opens and
	// Clicks are set per campaign.
	Tracking *Tracking
	// Engagement gives a campaign tag's unique human opens and clicks
	// (tracking's aggregates); A/B tests pick their winner with it.
	Engagement func(campaign string) (uniqueOpens, uniqueClicks int64, err error)
	// Keys lists the API keys a campaign may send under (the database
	// keys, account.Key.Limits); nil refuses every Spec.APIKey.
	Keys func(ctx context.Context) ([]httpapi.Key, error)
}

// SetOptions sets o (before Start).
func (s *Service) SetOptions(o Options) { s.opts = o }

func (s *Service) arg(n int) string { return sqlq.Placeholder(s.pg, n) }

// invalidError is a Spec that cannot be stored (HTTP 400).
type invalidError struct{ error }

func (e *invalidError) Unwrap() error { return e.error }

// ErrExists is returned by Create for an id already used.
var ErrExists = errors.New("campaign: a campaign with this id exists")

// ErrNotFound is returned for an unknown campaign.
var ErrNotFound = errors.New("campaign: no such campaign")

func (sp Spec) stream() string {
	if sp.Stream == "" {
		return "marketing"
	}
	return sp.Stream
}

// compile checks sp's template against its audience's fields. A
// marketing template without %unsubscribe_url% gets an automatic footer
// with the postal address and the unsubscribe link, in both parts.
func (s *Service) compile(ctx context.Context, sp Spec) (*Compiled, error) {
	a, err := s.aud.Audience(ctx, sp.Audience)
	if err != nil {
		return nil, err
	}
	names := append([]string(nil), templateFields...)
	for _, f := range a.Fields {
		names = append(names, f.Name)
	}
	c, err := s.content(ctx, sp)
	if err != nil {
		return nil, err
	}
	if sp.stream() == "marketing" {
		c = withFooter(c, sp.PostalAddress)
	}
	c = sp.UTM.apply(c, domainOf(sp.From))
	return Compile(c, NewFieldSet(names...))
}

// content is what sp sends: its pinned template version's, or its own.
func (s *Service) content(ctx context.Context, sp Spec) (Content, error) {
	if sp.Template == "" {
		return Content{Subject: sp.Subject, Preheader: sp.Preheader, HTML: sp.HTML, Text: sp.Text}, nil
	}
	if s.opts.Templates == nil {
		return Content{}, &invalidError{errors.New("campaign: no template store to resolve template")}
	}
	tp, err := s.opts.Templates.Get(ctx, sp.Template, sp.TemplateVersion)
	if errors.Is(err, ErrUnknownTemplate) {
		return Content{}, &invalidError{fmt.Errorf("campaign: template %q version %d: %w", sp.Template, sp.TemplateVersion, err)}
	}
	if err != nil {
		return Content{}, err
	}
	return tp.Content, nil
}

func specJSON(sp Spec) (string, error) {
	raw, err := json.Marshal(sp)
	if err != nil {
		return "", fmt.Errorf("campaign: spec: %w", err)
	}
	return string(raw), nil
}

// withFooter adds the compliance footer unless the content already links
// %unsubscribe_url% itself.
func withFooter(c Content, postal string) Content {
	if strings.Contains(c.HTML+c.Text, "%unsubscribe_url%") {
		return c
	}
	addr := strings.ReplaceAll(postal, "%", "%%")
	if c.Text == "" && c.HTML != "" {
		c.Text = HTMLToText(c.HTML)
	}
	c.Text = strings.TrimRight(c.Text, "\n") + "\n\n--\n" + addr + "\nUnsubscribe: %unsubscribe_url%\n"
	if c.HTML != "" {
		at := bodyEndOffset(c.HTML)
		footer := `<p style="font-size:12px;color:#666666">` + html.EscapeString(addr) + `<br><a href="%unsubscribe_url%">Unsubscribe</a></p>`
		c.HTML = c.HTML[:at] + footer + c.HTML[at:]
	}
	return c
}

// Create validates sp (id, sender, template against the audience's
// fields, segment expression) and stores it as a draft.
func (s *Service) Create(ctx context.Context, sp Spec) (Campaign, error) {
	if !campaignID.MatchString(sp.ID) {
		return Campaign{}, &invalidError{fmt.Errorf("campaign: id %q must be 1-64 of a-z, 0-9, _ and -", sp.ID)}
	}
	if _, err := mail.ParseAddress(sp.From); err != nil {
		return Campaign{}, &invalidError{fmt.Errorf("campaign: from %q: %w", sp.From, err)}
	}
	if err := sp.UTM.validate(); err != nil {
		return Campaign{}, &invalidError{err}
	}
	if _, err := s.sendingKey(ctx, sp); err != nil {
		return Campaign{}, err
	}
	if sp.stream() == "marketing" {
		if strings.TrimSpace(sp.PostalAddress) == "" {
			return Campaign{}, &invalidError{errors.New("campaign: postal_address is required for marketing mail (CAN-SPAM)")}
		}
		if s.unsub == nil || s.unsub("marketing", sp.From) == "" {
			return Campaign{}, &invalidError{errors.New("campaign: marketing mail needs an unsubscribe link: set [sending] unsubscribe_url (or [bounce] domain for the mailto form)")}
		}
	}
	if sp.Template != "" {
		if sp.Subject != "" || sp.Preheader != "" || sp.HTML != "" || sp.Text != "" {
			return Campaign{}, &invalidError{errors.New("campaign: give either template or inline subject/html/text, not both")}
		}
		if s.opts.Templates == nil {
			return Campaign{}, &invalidError{errors.New("campaign: no template store")}
		}
		// Pin the version: later edits of the template make new versions
		// and never change this campaign.
		tp, err := s.opts.Templates.Get(ctx, sp.Template, sp.TemplateVersion)
		if err != nil {
			if errors.Is(err, ErrUnknownTemplate) {
				return Campaign{}, &invalidError{fmt.Errorf("campaign: template %q version %d: %w", sp.Template, sp.TemplateVersion, err)}
			}
			return Campaign{}, err
		}
		sp.TemplateVersion = tp.Version
	}
	if _, err := s.compile(ctx, sp); err != nil {
		return Campaign{}, err
	}
	if sp.AB != nil && sp.Schedule != nil && sp.Schedule.ContactTimeZone {
		return Campaign{}, &invalidError{errors.New("campaign: an A/B test cannot send in each contact's time zone")}
	}
	if sp.AB != nil {
		if err := sp.AB.validate(); err != nil {
			return Campaign{}, &invalidError{err}
		}
		// The winner is picked from tracked engagement: a metric the
		// campaign does not track would always pick the first variant.
		switch {
		case sp.AB.Metric == "clicks" && sp.TrackClicks != nil && !*sp.TrackClicks:
			return Campaign{}, &invalidError{errors.New("campaign: an A/B test judged on clicks needs track_clicks on")}
		case sp.AB.Metric != "clicks" && sp.TrackOpens != nil && !*sp.TrackOpens:
			return Campaign{}, &invalidError{errors.New("campaign: an A/B test judged on opens needs track_opens on (or judge it on clicks)")}
		}
		for _, v := range sp.AB.Variants {
			vsp := variantSpec(sp, v)
			if _, err := mail.ParseAddress(vsp.From); err != nil {
				return Campaign{}, &invalidError{fmt.Errorf("campaign: variant %s from %q: %w", v.Name, vsp.From, err)}
			}
			if _, err := s.compile(ctx, vsp); err != nil {
				return Campaign{}, fmt.Errorf("variant %s: %w", v.Name, err)
			}
		}
	}
	var sendAt int64
	status := StatusDraft
	if sp.Schedule != nil {
		at, err := sp.Schedule.resolve(time.Now())
		if err != nil {
			return Campaign{}, err
		}
		sendAt, status = at.Unix(), StatusScheduled
	}
	if sp.Segment != "" {
		if err := s.aud.CheckExpression(ctx, sp.Audience, sp.Segment); err != nil {
			return Campaign{}, err
		}
	}
	if err := s.checkRecipients(ctx, sp); err != nil {
		return Campaign{}, err
	}
	raw, err := specJSON(sp)
	if err != nil {
		return Campaign{}, err
	}
	now := time.Now().UTC()
	apiKey := sql.NullString{String: sp.APIKey, Valid: sp.APIKey != ""}
	_, err = s.db.ExecContext(ctx, "INSERT INTO campaigns (id, spec, status, created, updated_at, send_at, api_key) VALUES ("+s.arg(1)+", "+s.arg(2)+", "+s.arg(3)+", "+s.arg(4)+", "+s.arg(5)+", "+s.arg(6)+", "+s.arg(7)+")",
		sp.ID, raw, status, now.Unix(), now.Unix(), sendAt, apiKey)
	if err != nil {
		if c, gerr := s.Get(ctx, sp.ID); gerr == nil && c.Spec.ID == sp.ID {
			return Campaign{}, ErrExists
		}
		return Campaign{}, fmt.Errorf("campaign: create: %w", err)
	}
	if status == StatusScheduled {
		s.wakeScheduler()
	}
	return s.Get(ctx, sp.ID)
}

// Get returns a campaign with its progress.
func (s *Service) Get(ctx context.Context, id string) (Campaign, error) {
	var raw, status, errText, check string
	var created, sendAt, started, finished, updated int64
	var apiKey sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT spec, status, error, created, send_at, started_at, finished_at, updated_at, check_result, api_key FROM campaigns WHERE id = "+s.arg(1), id).
		Scan(&raw, &status, &errText, &created, &sendAt, &started, &finished, &updated, &check, &apiKey)
	if errors.Is(err, sql.ErrNoRows) {
		return Campaign{}, ErrNotFound
	}
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign: get: %w", err)
	}
	c := Campaign{Status: status, Error: errText, Created: time.Unix(created, 0).UTC(), Times: timesOf(sendAt, started, finished, updated)}
	if err := json.Unmarshal([]byte(raw), &c.Spec); err != nil {
		return Campaign{}, fmt.Errorf("campaign: corrupt spec of %s: %w", id, err)
	}
	c.Spec.APIKey = apiKey.String // the column is the record
	if check != "" {
		c.Check = new(CheckResult)
		if err := json.Unmarshal([]byte(check), c.Check); err != nil {
			return Campaign{}, fmt.Errorf("campaign: corrupt check of %s: %w", id, err)
		}
	}
	if c.Progress, c.AB, err = s.progressOf(ctx, c.Spec); err != nil {
		return Campaign{}, err
	}
	return c, nil
}

// Start remembers ctx as the lifetime of sends, resumes every campaign
// left sending by a previous process and runs the scheduler, which
// starts scheduled campaigns when they are due (those that fell due
// while petreld was down at once).
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	rows, err := s.db.QueryContext(ctx, "SELECT id FROM campaigns WHERE status = "+s.arg(1), StatusSending)
	if err != nil {
		return fmt.Errorf("campaign: resume: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("campaign: resume: %w", err)
	}
	for _, id := range ids {
		s.log.Info("resuming campaign send", "campaign", id)
		s.run(id)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.schedulerLoop(ctx) }()
	return nil
}

// run starts the send of id unless it is running.
func (s *Service) run(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[id]; ok || s.ctx == nil {
		return
	}
	stop := make(chan struct{})
	s.running[id] = stop
	s.wg.Add(1)
	go func(ctx context.Context) {
		defer s.wg.Done()
		err := s.runOnce(ctx, id, stop)
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		switch {
		case errors.Is(err, ErrStopped) && ctx.Err() == nil:
			// Resumed while this run was finishing its page: run again.
			if c, gerr := s.Get(ctx, id); gerr == nil && c.Status == StatusSending {
				s.run(id)
			}
		case errors.As(err, new(*GuardError)):
			// The sending domain dropped below what campaigns need: the
			// send waits, paused with the reason, for the operator.
			s.log.Warn("campaign paused", "campaign", id, "err", err)
			if _, terr := s.transition(context.Background(), id, []string{StatusSending}, StatusPaused, err.Error(), nil); terr != nil {
				s.log.Error("campaign status", "campaign", id, "err", terr)
			}
		case err == nil, ctx.Err() != nil:
		default:
			s.log.Error("campaign send failed", "campaign", id, "err", err)
			if _, terr := s.transition(context.Background(), id, []string{StatusSending}, StatusFailed, err.Error(), nil); terr != nil {
				s.log.Error("campaign status", "campaign", id, "err", terr)
			}
		}
	}(s.ctx)
}

func (s *Service) runOnce(ctx context.Context, id string, stop <-chan struct{}) error {
	c, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	sp := c.Spec
	tpl, err := s.compile(ctx, sp)
	if err != nil {
		return err
	}
	// The key's limits as they are now (an owner may have narrowed
	// them since the campaign was scheduled); ingest enforces them on
	// every message as well.
	key, err := s.sendingKey(ctx, sp)
	if err != nil {
		return err
	}
	send := s.sendOf(sp, tpl, stop)
	send.Key = key
	if sd := s.opts.Check.SenderDomain; sd != nil {
		domain := sp.From[strings.LastIndexByte(sp.From, '@')+1:]
		send.Guard = func() error { return sd(domain) }
	}
	consent := send.Stream == "marketing"
	if sp.RequireConsent != nil {
		consent = *sp.RequireConsent
	}
	src, err := s.source(ctx, sp)
	if err != nil {
		return err
	}
	src.RequireConsent = consent
	var st State
	switch {
	case sp.AB != nil:
		st, err = s.runAB(ctx, sp, stop, send.Guard, key, src)
	case sp.Schedule != nil && sp.Schedule.ContactTimeZone:
		st, err = s.runTZ(ctx, sp, send, src)
	default:
		st, err = s.engine.Run(ctx, send, src)
	}
	if err != nil {
		return err
	}
	if st.Done {
		_, err := s.transition(context.Background(), id, []string{StatusSending, StatusPaused}, StatusSent, "", nil)
		return err
	}
	return nil
}

// progressOf is sp's progress: its cursor's state, or the sum of its
// phases (A/B test, per-contact time zone passes).
func (s *Service) progressOf(ctx context.Context, sp Spec) (State, *ABState, error) {
	switch {
	case sp.AB != nil:
		ab, err := s.abState(ctx, sp.ID)
		if err != nil {
			return State{}, nil, err
		}
		return ab.sum(), &ab, nil
	case sp.Schedule != nil && sp.Schedule.ContactTimeZone:
		plan, err := s.loadTZPlan(ctx, sp.ID)
		if err != nil {
			return State{}, nil, err
		}
		sum := State{Skipped: map[string]int64{}, Done: plan != nil}
		for i := range plan {
			st, err := s.prog.Load(ctx, tzKey(sp.ID, i))
			if err != nil {
				return State{}, nil, err
			}
			sum.Sent += st.Sent
			sum.Done = sum.Done && st.Done
			for k, v := range st.Skipped {
				sum.Skipped[k] += v
			}
		}
		return sum, nil, nil
	}
	st, err := s.prog.Load(ctx, sp.ID)
	return st, nil, err
}

// checkRecipients refuses (400) recipients that cannot be paged: an
// unknown audience or saved segment to exclude, an excluded segment
// without an SQL translation, a bad expression.
func (s *Service) checkRecipients(ctx context.Context, sp Spec) error {
	src, err := s.source(ctx, sp)
	if err == nil {
		err = s.aud.CheckRecipients(ctx, src.query(0, 1))
	}
	var ae *audience.Error
	if errors.As(err, &ae) && ae.Kind == audience.NotFound {
		return &invalidError{fmt.Errorf("campaign: recipients: %s", ae.Message)}
	}
	return err
}

// source is where sp's recipients come from: its audience, segment and
// tags, minus its exclusions (saved segments resolved to their
// expressions).
func (s *Service) source(ctx context.Context, sp Spec) (AudienceSource, error) {
	src := AudienceSource{Store: s.aud, Audience: sp.Audience, Segment: sp.Segment, Tags: sp.Tags}
	if sp.Exclude != nil {
		src.Exclude = *sp.Exclude
		for _, id := range sp.Exclude.Segments {
			sg, err := s.aud.SegmentByID(ctx, sp.Audience, id)
			if err != nil {
				return src, err
			}
			src.excludeSegments = append(src.excludeSegments, sg.Expression)
		}
	}
	return src, nil
}

// sendOf is the engine's Send of sp with template tpl.
func (s *Service) sendOf(sp Spec, tpl *Compiled, stop <-chan struct{}) Send {
	send := Send{ID: sp.ID, Template: tpl, From: &mail.Address{Name: sp.FromName, Address: sp.From}, Stream: sp.stream(),
		PageSize: sp.PageSize, Rate: sp.Rate, Unsubscribe: s.unsub, Stop: stop}
	if t := s.opts.Tracking; t != nil {
		send.Tracking = t.forSend(sp.From, sp.APIKey, sp.TrackOpens, sp.TrackClicks)
	}
	if sp.ReplyTo != "" {
		send.ReplyTo = &mail.Address{Address: sp.ReplyTo}
	}
	return send
}

// Wait waits for the running sends to stop (after their ctx ended).
func (s *Service) Wait() { s.wg.Wait() }
