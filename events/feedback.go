package events

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/petrel-mta/petrel/bounce"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// Handle is the bounce.Inbound Handler: it parses one inbound report sent
// to rcpt, matches it to the original message and recipient, records the
// events (bounced, deferred, complained, autoreply) and applies the
// suppression rules. It returns an error only for a temporary failure
// (the sender gets 451 and retries); reports that cannot be used (forged,
// unparsable, unmatched) are accepted and dropped, and counted.
func (s *Service) Handle(ctx context.Context, rcpt string, raw []byte) error {
	rep, err := s.rules().Parse(raw)
	if err != nil || rep == nil {
		s.m.feedback.WithLabelValues("unknown", "ignored").Inc()
		s.log.Info("inbound report ignored: not a message", "rcpt", rcpt, "err", err)
		return nil
	}
	kind := string(rep.Kind)
	if rep.Kind == bounce.KindUnknown {
		s.m.feedback.WithLabelValues(kind, "ignored").Inc()
		s.log.Info("inbound report ignored: not a bounce, complaint or auto-reply", "rcpt", rcpt, "subject", rep.Subject)
		return nil
	}
	msgID, idx, forged := s.identify(rcpt, rep)
	if forged {
		s.m.forged.Inc()
		s.m.feedback.WithLabelValues(kind, "forged").Inc()
		s.log.Warn("inbound report ignored: forged VERP token", "rcpt", rcpt, "kind", kind)
		return nil
	}
	if msgID == "" {
		s.m.feedback.WithLabelValues(kind, "unmatched").Inc()
		s.log.Info("inbound report ignored: names no message of ours", "rcpt", rcpt, "kind", kind,
			"original_message_id", rep.OriginalMessageID)
		return nil
	}
	info, err := s.o.Queue.Message(msgID)
	if errors.Is(err, queue.ErrNotFound) {
		s.m.feedback.WithLabelValues(kind, "unmatched").Inc()
		s.log.Info("inbound report ignored: message no longer known", "msg", msgID, "kind", kind)
		return nil
	}
	if err != nil {
		return fmt.Errorf("events: look up message %s: %w", msgID, err)
	}
	evs, failures := s.reportEvents(rep, info, idx)
	if len(evs) == 0 {
		s.m.feedback.WithLabelValues(kind, "unmatched").Inc()
		s.log.Info("inbound report ignored: no recipient of the message matched", "msg", msgID, "kind", kind)
		return nil
	}
	if err := s.o.Queue.AppendEvents(ctx, evs); err != nil {
		return fmt.Errorf("events: record report events: %w", err)
	}
	for _, f := range failures {
		if err := s.applyFailure(f.ev, f.ev.Reason, f.hard, true); err != nil {
			return err
		}
	}
	if rep.Kind == bounce.KindARF {
		for _, ev := range evs {
			src := "fbl:" + msgID
			if ev.Type == "unsubscribed" {
				stream := firstNonEmpty(ev.Stream, s.o.Bounce.MarketingStream)
				if err := s.o.Suppressor.Suppress(stream, ev.Recipient, suppress.ReasonUnsubscribe, src); err != nil {
					return fmt.Errorf("events: suppress unsubscriber: %w", err)
				}
				s.log.Info("recipient suppressed: unsubscribe feedback", "stream", stream, "rcpt", ev.Recipient, "msg", msgID)
				continue
			}
			if err := s.o.Suppressor.Suppress(s.o.Bounce.MarketingStream, ev.Recipient, suppress.ReasonComplaint, src); err != nil {
				return fmt.Errorf("events: suppress complainer: %w", err)
			}
			s.log.Info("recipient suppressed: complaint", "stream", s.o.Bounce.MarketingStream, "rcpt", ev.Recipient,
				"msg", msgID, "message_stream", ev.Stream, "feedback_type", rep.FeedbackType)
		}
	}
	s.m.feedback.WithLabelValues(kind, "matched").Inc()
	return nil
}

// identify finds the message (and recipient index) a report is about:
// the envelope recipient's VERP token, else the original's return path
// (quoted in the report), else, for feedback reports only, the original's
// X-Petrel-ID header. forged is set when a token of our domain does not
// verify.
func (s *Service) identify(rcpt string, rep *bounce.Report) (msgID string, idx int, forged bool) {
	if s.verp != nil {
		for _, addr := range []string{rcpt, rep.OriginalReturnPath} {
			if addr == "" {
				continue
			}
			id, i, err := s.verp.Decode(addr)
			switch {
			case err == nil:
				return id, i, false
			case errors.Is(err, bounce.ErrVERPBadToken):
				return "", 0, true
			}
		}
	}
	if rep.Kind == bounce.KindARF && rep.PetrelID != "" {
		return rep.PetrelID, bounce.AnyRecipient, false
	}
	return "", 0, false
}

// failure is an asynchronous failed recipient to run the rules on.
type failure struct {
	ev   queue.Event
	hard bool
}

// matchRcpt returns the recipient of info a report line is about: the
// VERP index when it names one, else the reported address.
func matchRcpt(info *queue.MessageInfo, idx int, addr string) (queue.RcptInfo, bool) {
	if idx != bounce.AnyRecipient {
		for _, r := range info.Recipients {
			if r.Index == idx {
				return r, true
			}
		}
		return queue.RcptInfo{}, false
	}
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	if addr != "" {
		for _, r := range info.Recipients {
			if strings.EqualFold(r.Addr, addr) {
				return r, true
			}
		}
		return queue.RcptInfo{}, false
	}
	if len(info.Recipients) == 1 {
		return info.Recipients[0], true
	}
	return queue.RcptInfo{}, false
}

// reportEvents turns a report into events for the matched recipients and
// the failures the rules apply to.
func (s *Service) reportEvents(rep *bounce.Report, info *queue.MessageInfo, idx int) ([]queue.Event, []failure) {
	base := queue.Event{MsgID: info.ID, Stream: streamOr(info.Stream), Campaign: info.Campaign, Time: s.now().UTC()}
	lines := rep.Bounces
	if len(lines) == 0 {
		lines = []bounce.Bounce{{Reason: "undefined"}}
	}
	var evs []queue.Event
	var fails []failure
	seen := map[string]bool{}
	for _, b := range lines {
		r, ok := matchRcpt(info, idx, b.Recipient)
		if !ok {
			continue
		}
		ev := base
		ev.Recipient = r.Addr
		ev.RemoteMX, ev.Code, ev.Enhanced, ev.Reply, ev.Reason = b.RemoteMTA, b.ReplyCode, b.Status, b.Diagnostic, b.Reason
		ev.SourceIP = r.SourceIP // where the reported message left from
		switch rep.Kind {
		case bounce.KindAutoReply:
			ev.Type = "autoreply"
			if ev.Reason == "" || ev.Reason == "undefined" {
				ev.Reason = "vacation"
			}
		case bounce.KindARF:
			ev.Reply = firstNonEmpty(rep.FeedbackType, "abuse")
			switch strings.ToLower(rep.FeedbackType) {
			case "opt-out", "unsubscribe":
				// A provider's unsubscribe (Apple Mail, FBL opt-out):
				// the recipient leaves the list; not a spam complaint.
				ev.Type = "unsubscribed"
				ev.Reason = "unsubscribe"
			case "not-spam":
				continue // a reversal of an earlier verdict: nothing to act on
			default:
				ev.Type = "complained"
				ev.Reason = "feedback"
			}
		default:
			action := strings.ToLower(b.Action)
			switch {
			case action == "delivered" || action == "relayed" || action == "expanded":
				continue
			case action == "delayed":
				ev.Type = "deferred"
			default:
				ev.Type = "bounced"
			}
		}
		key := ev.Type + "\x00" + strings.ToLower(ev.Recipient)
		if seen[key] {
			continue // one event per recipient and type per report
		}
		seen[key] = true
		evs = append(evs, ev)
		if ev.Type == "bounced" {
			fails = append(fails, failure{ev: ev, hard: b.Hard})
		}
	}
	return evs, fails
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
