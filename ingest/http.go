package ingest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/mta"
)

// HTTPOptions configure NewHTTPHandler.
type HTTPOptions struct {
	// Hostname goes into Received and generated Message-ID headers.
	Hostname string
	// Keys authenticates requests (httpapi.NewKeys(cfg.HTTP.APIKeys)); nil
	// refuses every request with 401.
	Keys *httpapi.Keys
	// MaxMessageSize bounds the final message in bytes (smtp's
	// max_message_size is the natural value); larger requests get 413.
	MaxMessageSize int64
	// MaxRecipients per request; 0 means 1000.
	MaxRecipients int
	// CampaignStream is the stream of a request that names a campaign
	// but no stream (http.campaign_stream); "" keeps the key's stream.
	CampaignStream string
	// Submitter is the entry point messages go through; when nil,
	// NewHTTPHandler builds one from Spool, Policy, Recipients and
	// HopCountLimit.
	Submitter *Submitter
	// Spool is where accepted messages go (required without Submitter).
	Spool Spool
	// HopCountLimit is SubmitOptions.HopCountLimit.
	HopCountLimit int
	// Templates renders "template" requests; nil refuses them (422).
	Templates TemplateRenderer
	// Tracker applies open, click and unsubscribe tracking to built
	// messages (tracking.APITracker); nil tracks nothing.
	Tracker MessageTracker
	// Policy may be nil.
	Policy Policy
	// Recipients, if set, vets each recipient (verify at ingest).
	Recipients RecipientChecker
	Logger     *slog.Logger
	Registry   *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SendRequest is the JSON body of POST /api/v1/messages: either Raw, or
// Subject/Text/HTML/Headers from which a MIME message is built.
type SendRequest struct {
	// From is the envelope sender and, for built messages, the From
	// header: "a@example.com" or "Alice <a@example.com>".
	From string `json:"from"`
	// To are the recipients, in the same two forms.
	To []string `json:"to"`
	// Raw is a complete RFC 5322 message; bare LF line ends become CRLF
	// and its Bcc fields are removed (the envelope is To only).
	Raw     string `json:"raw,omitempty"`
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
	// Headers are extra header fields of a built message. A "Bcc" entry
	// adds its addresses to the envelope and is never written.
	Headers map[string]string `json:"headers,omitempty"`
	// Stream overrides the API key's stream (and any X-Petrel-Stream).
	Stream   string `json:"stream,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	// Template names a stored template by its call name: its subject,
	// HTML and text are rendered with Variables (HTML-escaped in HTML),
	// instead of subject/text/html/raw.
	Template  string            `json:"template,omitempty"`
	Variables map[string]string `json:"variables,omitempty"`
	// Tracking opts this message out of open, click or unsubscribe
	// tracking (false); true or absent leaves what the API key's and the
	// sending domain's settings say.
	Tracking *TrackingOptOut `json:"tracking,omitempty"`
}

// TrackingOptOut is the "tracking" object of a SendRequest.
type TrackingOptOut struct {
	Opens       *bool `json:"opens,omitempty"`
	Clicks      *bool `json:"clicks,omitempty"`
	Unsubscribe *bool `json:"unsubscribe,omitempty"`
}

// TrackedMessage is a built (not raw) API message as a MessageTracker
// sees it: it rewrites HTML and Text in place and says whether policy
// adds List-Unsubscribe.
type TrackedMessage struct {
	// Key is the API key's name ("user:EMAIL" for a dashboard session).
	Key  string
	From string
	// Rcpts are the envelope recipients (one body for all of them).
	Rcpts  []string
	Stream string
	// Campaign is the request's campaign, else the template's call name.
	Campaign string
	// MessageID is the Message-ID the message gets (without <>).
	MessageID  string
	HTML, Text string
	// Raw is set for a raw message: HTML and Text are empty and only
	// Unsubscribe applies.
	Raw    bool
	OptOut TrackingOptOut
	// Unsubscribe is set by the tracker: nil leaves List-Unsubscribe to
	// the stream's default, true adds it, false does not.
	Unsubscribe *bool
}

// MessageTracker applies tracking to API messages before they are built.
type MessageTracker interface {
	TrackMessage(ctx context.Context, m *TrackedMessage) error
}

// TemplateRenderer renders stored templates by call name for HTTP
// injection (*campaign.Templates). An unknown call name is an error
// wrapping ErrUnknownTemplate.
type TemplateRenderer interface {
	RenderTemplate(ctx context.Context, callName string, vars map[string]string) (subject, html, text, typ string, err error)
}

// ErrUnknownTemplate: no template has the call name (HTTP 422).
var ErrUnknownTemplate = errors.New("unknown template")

// SendResponse is the 202 answer to POST /api/v1/messages.
type SendResponse struct {
	ID     string `json:"id"`
	Stream string `json:"stream"`
	// MessageID is the Message-ID header of a message Petrel built (not
	// raw), without the angle brackets: the "message" of its tracking
	// events.
	MessageID  string          `json:"message_id,omitempty"`
	Recipients []RecipientInfo `json:"recipients"`
}

// RecipientInfo is one recipient's fate at ingest.
type RecipientInfo struct {
	Address string `json:"address"`
	// Status is "queued" or "suppressed".
	Status string `json:"status"`
	// Reason is the suppression reason.
	Reason string `json:"reason,omitempty"`
}

// NewHTTPHandler returns the injection API:
//
//	POST /api/v1/messages       queue a message (202 once durable)
//	GET  /api/v1/messages/{id}  the message's recipients and states
//
// Both need a bearer API key. Errors are JSON (internal/httpapi).
func NewHTTPHandler(opts HTTPOptions) http.Handler {
	if opts.Keys == nil {
		opts.Keys = httpapi.NewKeys(nil)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 25 << 20
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = 1000
	}
	log := opts.Logger.With("component", "ingest.http")
	p := opts.Submitter
	if p == nil {
		p = NewSubmitter(SubmitOptions{Hostname: opts.Hostname, Spool: opts.Spool, Policy: opts.Policy,
			Recipients: opts.Recipients, HopCountLimit: opts.HopCountLimit, Logger: opts.Logger,
			Registry: opts.Registry, Now: opts.Now})
	}
	h := &httpHandler{opts: opts, p: p, log: log}
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/messages", opts.Keys.Require(http.HandlerFunc(h.send)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return mux
}

type httpHandler struct {
	opts HTTPOptions
	p    *Submitter
	log  *slog.Logger
}

// apiError is a client-facing failure.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(code, format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, code, fmt.Sprintf(format, a...)}
}

func unprocessable(code, format string, a ...any) *apiError {
	return &apiError{http.StatusUnprocessableEntity, code, fmt.Sprintf(format, a...)}
}

// bodyLimit bounds the JSON request: room for JSON escaping of a message
// of MaxMessageSize; the built message itself is checked afterwards.
func (h *httpHandler) bodyLimit() int64 { return 2*h.opts.MaxMessageSize + 64<<10 }

func (h *httpHandler) send(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	key, _ := httpapi.KeyFrom(r.Context())
	resp, err := h.handleSend(r, key)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{http.StatusInternalServerError, "internal", "internal error"}
		}
		result := resultRejected
		if ae.status >= 500 {
			result = resultError
			w.Header().Set("Retry-After", "30")
		}
		h.p.m.message("http", result)
		h.log.Info("injection refused", "key", key.Name, "status", ae.status, "code", ae.code, "err", err)
		httpapi.WriteError(w, ae.status, ae.code, ae.message)
		return
	}
	h.p.m.queued("http", countQueued(resp), start)
	httpapi.WriteJSON(w, http.StatusAccepted, resp)
}

func countQueued(r *SendResponse) int {
	n := 0
	for _, x := range r.Recipients {
		if x.Status == "queued" {
			n++
		}
	}
	return n
}

// DecodeSendRequest strictly decodes one SendRequest from r: unknown
// fields, trailing data and wrong types are errors.
func DecodeSendRequest(r io.Reader) (SendRequest, error) {
	var req SendRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return SendRequest{}, fmt.Errorf("decode request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return SendRequest{}, errors.New("decode request: trailing data after the JSON object")
	}
	return req, nil
}

func (h *httpHandler) handleSend(r *http.Request, key httpapi.Key) (*SendResponse, error) {
	if err := h.p.CheckSpace(); err != nil {
		return nil, submitAPIError(err, Receipt{})
	}
	req, err := DecodeSendRequest(http.MaxBytesReader(nil, r.Body, h.bodyLimit()))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{http.StatusRequestEntityTooLarge, "message_too_large",
				fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
		}
		return nil, badRequest("invalid_request", "%v", err)
	}
	campaign := cmp.Or(req.Campaign, req.Template)
	if req.Template != "" {
		if err := h.renderTemplate(r.Context(), &req); err != nil {
			return nil, err
		}
	}
	now := h.opts.Now()
	msgID := fmt.Sprintf("%d.%s@%s", now.UnixNano(), newID(8), safeToken(h.opts.Hostname))
	env, msg, err := h.prepare(req, key, now, msgID, func(env *Envelope, req *SendRequest) error {
		return h.track(r.Context(), key, campaign, msgID, env, req)
	})
	if err != nil {
		return nil, err
	}
	if int64(len(msg)) > h.opts.MaxMessageSize {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "message_too_large",
			fmt.Sprintf("message is %d bytes, the limit is %d", len(msg), h.opts.MaxMessageSize)}
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		prefix := "http:" + key.Name + ":" // one key space per API key
		if len(prefix)+len(k) > mta.MaxIdempotencyKey || hasCtl(k) {
			return nil, badRequest("invalid_request", "Idempotency-Key must be at most %d printable bytes", mta.MaxIdempotencyKey-len(prefix))
		}
		env.IdempotencyKey = prefix + k
	}
	env.Trace = Trace{Helo: "api-key=" + key.Name, IP: remoteIP(r), With: "HTTP"}
	if r.TLS != nil {
		env.Trace.With = "HTTPS"
	}
	res, err := h.p.Submit(r.Context(), env, msg)
	if err != nil {
		return nil, submitAPIError(err, res)
	}
	out := &SendResponse{ID: res.ID, Stream: res.Stream}
	if req.Raw == "" {
		out.MessageID = msgID
	}
	for _, a := range env.Rcpts {
		if reason, ok := res.Suppressed[a]; ok {
			out.Recipients = append(out.Recipients, RecipientInfo{Address: a, Status: "suppressed", Reason: reason})
		} else if reason, ok := res.Rejected[a]; ok {
			out.Recipients = append(out.Recipients, RecipientInfo{Address: a, Status: "rejected", Reason: reason})
		} else {
			out.Recipients = append(out.Recipients, RecipientInfo{Address: a, Status: "queued"})
		}
	}
	return out, nil
}

// submitAPIError maps Submit errors to HTTP answers.
func submitAPIError(err error, res Receipt) error {
	var senderErr *SenderError
	var scopeErr *ScopeError
	var temp *TemporaryError
	switch {
	case errors.Is(err, ErrNUL):
		return unprocessable("nul_byte", "the message contains a NUL byte; nothing was queued")
	case errors.Is(err, ErrLoop):
		return unprocessable("mail_loop", "%v; nothing was queued", err)
	case errors.Is(err, ErrBadHeader):
		return unprocessable("invalid_message", "raw is not an RFC 5322 message: %v", err)
	case errors.Is(err, ErrBadStream):
		return badRequest("invalid_request", "%v", err)
	case errors.Is(err, ErrAllSuppressed):
		if len(res.Rejected) > 0 {
			return unprocessable("no_valid_recipient", "no recipient can be queued (%d suppressed in stream %s, %d rejected by address verification); nothing was queued", len(res.Suppressed), res.Stream, len(res.Rejected))
		}
		return unprocessable("all_suppressed", "every recipient is suppressed in stream %s; nothing was queued", res.Stream)
	case errors.As(err, &senderErr):
		return unprocessable("sender_not_allowed", "%v", senderErr.Err)
	case errors.As(err, &scopeErr):
		return &apiError{http.StatusForbidden, scopeErr.Field + "_not_allowed", scopeErr.Error() + "; nothing was queued"}
	case errors.Is(err, mta.ErrInsufficientStorage):
		return &apiError{http.StatusInsufficientStorage, "insufficient_storage", "insufficient system storage: message not queued, try again later"}
	case errors.As(err, &temp):
		return &apiError{http.StatusServiceUnavailable, "temporary_failure", "message not queued, try again later"}
	}
	return err
}

// parseAddr accepts "a@x" or "Name <a@x>" and checks the address with
// ParseMailbox (UTF-8 allowed).
func parseAddr(field, s string) (*mail.Address, error) {
	if hasCtl(s) {
		return nil, unprocessable("header_injection", "%s contains CR, LF or NUL", field)
	}
	a := &mail.Address{Address: s}
	if _, err := ParseMailbox(s, true); err != nil {
		pa, perr := mail.ParseAddress(s)
		if perr != nil {
			return nil, badRequest("invalid_address", "%s %q: %v", field, s, err)
		}
		if _, err := ParseMailbox(pa.Address, true); err != nil {
			return nil, badRequest("invalid_address", "%s %q: %v", field, s, err)
		}
		a = pa
	}
	return a, nil
}

// prepare validates req and turns it into an envelope and the message
// bytes without trace fields. Bcc given in headers is added to the
// envelope and never written; a raw message's Bcc fields are removed by
// Submit (Envelope.RemoveBcc).
func (h *httpHandler) prepare(req SendRequest, key httpapi.Key, now time.Time, msgID string, track func(*Envelope, *SendRequest) error) (Envelope, []byte, error) {
	if req.From == "" {
		return Envelope{}, nil, badRequest("invalid_request", "from is required")
	}
	if len(req.To) == 0 {
		return Envelope{}, nil, badRequest("invalid_request", "to must list at least one recipient")
	}
	if len(req.To) > h.opts.MaxRecipients {
		return Envelope{}, nil, badRequest("too_many_recipients", "at most %d recipients per message", h.opts.MaxRecipients)
	}
	from, err := parseAddr("from", req.From)
	if err != nil {
		return Envelope{}, nil, err
	}
	env := Envelope{Source: "http", From: from.Address, Stream: key.Stream,
		HeaderStream: req.Stream == "", Campaign: req.Campaign, RemoveBcc: true}
	env.LimitTo(key)
	if req.Campaign != "" && h.opts.CampaignStream != "" {
		env.Stream = h.opts.CampaignStream // the X-Petrel-Stream header may still override
	}
	if req.Stream != "" {
		env.Stream = strings.ToLower(req.Stream)
	}
	var to []*mail.Address
	seen := map[string]bool{}
	addRcpt := func(a *mail.Address) {
		if k := strings.ToLower(a.Address); !seen[k] {
			seen[k] = true
			env.Rcpts = append(env.Rcpts, a.Address)
		}
	}
	for _, s := range req.To {
		a, err := parseAddr("to", s)
		if err != nil {
			return Envelope{}, nil, err
		}
		to = append(to, a)
		addRcpt(a)
	}
	headers := req.Headers
	for name, v := range req.Headers {
		if !strings.EqualFold(name, "Bcc") {
			continue
		}
		if hasCtl(v) {
			return Envelope{}, nil, unprocessable("header_injection", "headers.%s contains CR, LF or NUL", name)
		}
		list, err := mail.ParseAddressList(v)
		if err != nil {
			return Envelope{}, nil, badRequest("invalid_address", "headers.%s %q: %v", name, v, err)
		}
		for _, a := range list {
			if _, err := ParseMailbox(a.Address, true); err != nil {
				return Envelope{}, nil, badRequest("invalid_address", "headers.%s %q: %v", name, a.Address, err)
			}
			addRcpt(a)
		}
		if len(headers) == len(req.Headers) {
			headers = maps.Clone(req.Headers)
		}
		delete(headers, name)
	}
	if len(env.Rcpts) > h.opts.MaxRecipients {
		return Envelope{}, nil, badRequest("too_many_recipients", "at most %d recipients per message", h.opts.MaxRecipients)
	}
	if hasCtl(req.Campaign) {
		return Envelope{}, nil, unprocessable("header_injection", "campaign contains CR, LF or NUL")
	}
	if req.Raw != "" && (req.Subject != "" || req.Text != "" || req.HTML != "" || len(req.Headers) > 0) {
		return Envelope{}, nil, badRequest("invalid_request", "raw excludes subject, text, html and headers")
	}
	if err := track(&env, &req); err != nil {
		return Envelope{}, nil, err
	}
	if req.Raw != "" {
		return env, toCRLF([]byte(req.Raw)), nil
	}
	msg, err := buildMessage(composed{From: from, To: to, Subject: req.Subject, Text: req.Text, HTML: req.HTML,
		Headers: headers, Date: now, MessageID: msgID})
	switch {
	case errors.Is(err, errNoBody):
		return Envelope{}, nil, badRequest("invalid_request", "%v", err)
	case errors.Is(err, errHeaderValue):
		return Envelope{}, nil, unprocessable("header_injection", "%v", err)
	case err != nil:
		return Envelope{}, nil, unprocessable("invalid_message", "%v", err)
	}
	return env, msg, nil
}

// toCRLF turns bare LF line ends into CRLF, leaving CRLF alone.
func toCRLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) || bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "unknown"
	}
	return host
}

// track lets the Tracker rewrite req's parts and decide env's
// List-Unsubscribe.
func (h *httpHandler) track(ctx context.Context, key httpapi.Key, campaign, msgID string, env *Envelope, req *SendRequest) error {
	if h.opts.Tracker == nil {
		return nil
	}
	m := TrackedMessage{Key: key.Name, From: env.From, Rcpts: env.Rcpts, Stream: cmp.Or(env.Stream, DefaultStream), Campaign: campaign,
		MessageID: msgID, HTML: req.HTML, Text: req.Text, Raw: req.Raw != ""}
	if req.Tracking != nil {
		m.OptOut = *req.Tracking
	}
	if err := h.opts.Tracker.TrackMessage(ctx, &m); err != nil {
		return &apiError{http.StatusServiceUnavailable, "temporary_failure", "tracking: " + err.Error()}
	}
	req.HTML, req.Text, env.ListUnsubscribe = m.HTML, m.Text, m.Unsubscribe
	return nil
}

// renderTemplate replaces req's template reference by its rendered
// subject, HTML and text; a marketing template goes to the marketing
// stream unless the request names one.
func (h *httpHandler) renderTemplate(ctx context.Context, req *SendRequest) error {
	if req.Raw != "" || req.Subject != "" || req.Text != "" || req.HTML != "" {
		return badRequest("invalid_request", "template excludes raw, subject, text and html")
	}
	if h.opts.Templates == nil {
		return unprocessable("templates_unavailable", "this server has no template store")
	}
	subject, html, text, typ, err := h.opts.Templates.RenderTemplate(ctx, req.Template, req.Variables)
	switch {
	case errors.Is(err, ErrUnknownTemplate):
		return unprocessable("unknown_template", "no template with call name %q", req.Template)
	case err != nil:
		return &apiError{http.StatusServiceUnavailable, "temporary_failure", "template store: " + err.Error()}
	}
	req.Subject, req.HTML, req.Text, req.Template = subject, html, text, ""
	if typ == "marketing" && req.Stream == "" {
		req.Stream = "marketing"
	}
	return nil
}
