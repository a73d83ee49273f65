package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/queue"
)

// pipeline is the part of accepting a message SMTP and HTTP share: stream
// selection, suppression, sender check, trace headers, Policy.Prepare and
// the durable Enqueue.
type pipeline struct {
	hostname string
	spool    queue.Spool
	policy   Policy
	checker  RecipientChecker
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
}

// submission is one message handed to pipeline.accept.
type submission struct {
	listener string // "smtp" or "http", also the queue Source
	from     string
	rcpts    []string
	// stream chosen so far (user's, key's or request's); the message's
	// X-Petrel-Stream header overrides it when allowHeaderStream is set.
	stream            string
	allowHeaderStream bool
	campaign          string
	msg               []byte
	trace             traceInfo
}

// acceptResult says what happened to each recipient.
type acceptResult struct {
	id         string
	stream     string
	queued     []string
	suppressed map[string]string // address -> reason
	rejected   map[string]string // address -> reason (verify at ingest)
}

// Rejections pipeline.accept returns; the listeners map them to protocol
// replies.
var (
	errAllSuppressed = errors.New("all recipients are suppressed")
	errBadStream     = errors.New("invalid stream name")
)

// senderError wraps a Policy.CheckSender refusal.
type senderError struct{ err error }

func (e *senderError) Error() string { return e.err.Error() }
func (e *senderError) Unwrap() error { return e.err }

// tempError marks a failure the client should retry (Prepare, Enqueue).
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

// suppressed asks the policy whether addr is suppressed in stream.
func (p *pipeline) suppressed(stream, addr string) (string, bool) {
	if p.policy == nil {
		return "", false
	}
	return p.policy.Suppressed(stream, addr)
}

// rejected asks the recipient checker (verify at ingest) about addr.
func (p *pipeline) rejected(ctx context.Context, addr string) (string, bool) {
	if p.checker == nil {
		return "", false
	}
	return p.checker.RejectRecipient(ctx, addr)
}

// accept runs a parsed-enough message through the shared steps and queues
// it. It returns only after Enqueue returned, so a nil error means durable.
func (p *pipeline) accept(ctx context.Context, s submission) (acceptResult, error) {
	h, err := parseHeader(s.msg)
	if err != nil {
		return acceptResult{}, err
	}
	stream := s.stream
	if s.allowHeaderStream && h.stream != "" {
		stream = strings.ToLower(h.stream)
	}
	if stream == "" {
		stream = DefaultStream
	}
	if !validStream(stream) {
		return acceptResult{}, fmt.Errorf("%w: %q", errBadStream, stream)
	}
	res := acceptResult{stream: stream, suppressed: map[string]string{}, rejected: map[string]string{}}
	for _, r := range s.rcpts {
		if reason, ok := p.suppressed(stream, r); ok {
			res.suppressed[r] = reason
			continue
		}
		if s.listener != "smtp" { // SMTP asked at RCPT already
			if reason, ok := p.rejected(ctx, r); ok {
				res.rejected[r] = reason
				continue
			}
		}
		res.queued = append(res.queued, r)
	}
	if len(res.queued) == 0 {
		return res, errAllSuppressed
	}
	if p.policy != nil {
		dom := domainOf(h.from)
		if dom == "" {
			dom = domainOf(s.from)
		}
		if dom != "" {
			if err := p.policy.CheckSender(ctx, dom); err != nil {
				return res, &senderError{err}
			}
		}
	}
	t := s.trace
	t.by = p.hostname
	t.date = p.now()
	if len(res.queued) == 1 {
		t.rcpt = res.queued[0]
	}
	msg := addHeaders(s.msg, h, t)
	if p.policy != nil {
		msg, err = p.policy.Prepare(ctx, stream, res.queued, msg)
		if err != nil {
			return res, &tempError{fmt.Errorf("prepare: %w", err)}
		}
	}
	env := queue.Envelope{From: s.from, Recipients: res.queued, Stream: stream, Campaign: s.campaign, Source: s.listener}
	id, err := p.spool.Enqueue(ctx, env, msg)
	if err != nil {
		return res, &tempError{fmt.Errorf("enqueue: %w", err)}
	}
	res.id = id
	p.log.Info("message queued", "listener", s.listener, "id", id, "from", s.from,
		"rcpts", len(res.queued), "suppressed", len(res.suppressed), "stream", stream, "size", len(msg), "trace_id", t.id)
	return res, nil
}

// domainOf returns the lower-cased part after the last "@", or "".
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
