package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// aboutUs are reasons that say something about the sender (reputation,
// rate, authentication, content), not the recipient: they never suppress
// the recipient; asynchronous ones go to the shaper's automation.
var aboutUs = map[string]bool{
	"badreputation": true, "blocked": true, "speeding": true, "toomanyconn": true,
	"spamdetected": true, "policyviolation": true, "rejected": true, "securityerror": true,
	"authfailure": true, "requireptr": true, "failedstarttls": true, "norelaying": true,
	"contenterror": true, "virusdetected": true, "notcompliantrfc": true,
}

// recipientSoft are reasons of a temporary problem with the recipient's
// mailbox: they count toward soft_bounce_limit.
var recipientSoft = map[string]bool{
	"mailboxfull": true, "exceedlimit": true, "suspend": true, "filtered": true,
	"notaccept": true, "hasmoved": true, "userunknown": true, "hostunknown": true,
}

// streamOr returns stream, or "transactional" for events without one.
func streamOr(stream string) string {
	if stream == "" {
		return "transactional"
	}
	return stream
}

// applyPage is the rules loop's page handler: it applies the suppression
// rules to synchronous outcomes recorded by delivery (asynchronous ones,
// with Attempt 0, were applied by the feedback handler before it answered
// 250).
func (s *Service) applyPage(ctx context.Context, evs []queue.Event) (int, error) {
	for i, ev := range evs {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if err := s.applyEvent(ev); err != nil {
			return i, err
		}
	}
	return len(evs), nil
}

// ruleTypes are the event types applyEvent acts on (the rules loop reads
// only these).
var ruleTypes = []string{"bounced", "deferred", "expired"}

func (s *Service) applyEvent(ev queue.Event) error {
	if ev.Attempt == 0 || ev.Recipient == "" {
		return nil
	}
	switch ev.Type {
	case "bounced":
		if localDecision(ev.Reason) {
			return nil // our own policy refused: nothing is known about the address
		}
		c := s.rules().Classify(ev.Code, ev.Enhanced, ev.Reply)
		reason, hard := c.Reason, c.Hard
		if ev.Reason != "" {
			reason = ev.Reason
		}
		return s.applyFailure(ev, reason, hard, false)
	case "deferred", "expired":
		if ev.Code == 0 {
			return nil // local or connection failure: says nothing about the mailbox
		}
		reason := s.rules().Classify(ev.Code, ev.Enhanced, ev.Reply).Reason
		return s.applyFailure(ev, reason, false, false)
	}
	return nil
}

// rules returns the configured classifier rules.
func (s *Service) rules() *bounce.Rules {
	if s.o.Rules != nil {
		return s.o.Rules
	}
	return bounce.DefaultRules()
}

// localDecision reports whether a delivery reason names a local refusal
// (shaping policy, suppression, malformed address, local error) rather
// than a remote answer.
func localDecision(reason string) bool {
	return reason == "policy" || reason == "local" || reason == "badaddress" || strings.HasPrefix(reason, "suppressed")
}

// applyFailure runs the rules for one failed recipient: hard → suppress in
// the stream now; recipient-side soft reason → count toward the
// soft-bounce limit; about-us reason → (async only) shaper automation.
func (s *Service) applyFailure(ev queue.Event, reason string, hard, async bool) error {
	stream := streamOr(ev.Stream)
	source := "bounce:" + ev.MsgID
	switch {
	case hard:
		if err := s.o.Suppressor.Suppress(stream, ev.Recipient, suppress.ReasonHardBounce, source); err != nil {
			return fmt.Errorf("events: suppress hard bounce: %w", err)
		}
		s.log.Info("recipient suppressed: hard bounce", "stream", stream, "rcpt", ev.Recipient, "reason", reason, "msg", ev.MsgID, "async", async)
	case aboutUs[reason]:
		if async && s.o.Shaper != nil {
			d := mta.Dest{Domain: domainOf(ev.Recipient), MXHost: strings.ToLower(ev.RemoteMX), Stream: stream}
			for _, eg := range s.o.Shaper.Egresses(stream) {
				s.o.Shaper.Observe(d, eg, ev.Code, ev.Enhanced, ev.Reply)
			}
		}
	case recipientSoft[reason]:
		return s.countSoft(stream, ev.Recipient, ev.MsgID, ev.Time, reason)
	}
	return nil
}

// countSoft records a soft bounce and suppresses the address once it
// reached soft_bounce_limit distinct messages within soft_bounce_window.
func (s *Service) countSoft(stream, addr, msgID string, t time.Time, reason string) error {
	limit := s.o.Bounce.SoftBounceLimit
	if limit <= 0 {
		return nil
	}
	if t.IsZero() {
		t = s.now()
	}
	window := s.o.Bounce.SoftBounceWindow.Duration
	n, err := s.st.addSoft(stream, addr, msgID, t, window)
	if err != nil {
		return err
	}
	if n < limit {
		return nil
	}
	src := fmt.Sprintf("soft-bounce:%d in %s", n, window)
	if err := s.o.Suppressor.Suppress(stream, addr, suppress.ReasonHardBounce, src); err != nil {
		return fmt.Errorf("events: suppress after soft bounces: %w", err)
	}
	s.m.softSuppress.Inc()
	s.log.Info("recipient suppressed: soft-bounce limit", "stream", stream, "rcpt", addr, "count", n, "window", window, "last_reason", reason)
	return s.st.clearSoft(stream, addr)
}
