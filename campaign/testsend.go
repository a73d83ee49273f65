package campaign

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/petrel-mta/petrel/ingest"
)

// MaxTestRecipients bounds a test send.
const MaxTestRecipients = 20

// TestResult is one address of a test send.
type TestResult struct {
	To      string `json:"to"`
	QueueID string `json:"queue_id,omitempty"`
	Error   string `json:"error,omitempty"`
}

// TestSend renders the campaign for each address (with the values of the
// audience's contact of that address, when there is one) and submits it
// through ingest marked as a test: subject prefixed "[Test] ", header
// X-Petrel-Test, no campaign id on the envelope (so it counts in no
// campaign stats or progress) and no consent or status checks. Test
// messages are tracked like the campaign's (click tokens, open pixel),
// under the tag "<id>#test", so their opens and clicks are seen but never
// counted in the campaign's stats or its A/B test. Test sends are
// recorded in campaign_tests; any status but cancelled allows them.
func (s *Service) TestSend(ctx context.Context, id string, to []string) ([]TestResult, error) {
	if len(to) == 0 || len(to) > MaxTestRecipients {
		return nil, &invalidError{fmt.Errorf("campaign: a test send goes to 1 to %d addresses", MaxTestRecipients)}
	}
	for _, a := range to {
		if _, err := mail.ParseAddress(a); err != nil {
			return nil, &invalidError{fmt.Errorf("campaign: test address %q: %w", a, err)}
		}
	}
	c, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Status == StatusCancelled {
		return nil, &StateError{ID: id, Status: c.Status, Action: "test-send"}
	}
	tpl, err := s.compile(ctx, c.Spec)
	if err != nil {
		return nil, err
	}
	key, err := s.sendingKey(ctx, c.Spec)
	if err != nil {
		return nil, err
	}
	send := s.sendOf(c.Spec, tpl, nil)
	send.Key = key
	send.Extra = append(send.Extra, [2]string{"X-Petrel-Test", "campaign " + id})
	subs := make([]ingest.Submission, 0, len(to))
	at := time.Now()
	for i, a := range to {
		r := Recipient{Email: a, Values: Map{"email": a}}
		if ct, err := s.aud.ContactByEmail(ctx, c.Spec.Audience, a); err == nil {
			r.Name, r.Values = ct.Name, contactValues(ct)
		}
		key := "campaign-test:" + id + ":" + strconv.FormatInt(at.UnixNano(), 36) + ":" + strconv.Itoa(i)
		msg, err := send.buildTest(r, TestTag(id), key, at)
		if err != nil {
			return nil, err
		}
		subs = append(subs, ingest.Submission{Envelope: send.keyed(ingest.Envelope{
			From: send.From.Address, Rcpts: []string{a}, Stream: send.Stream, Source: "campaign-test",
			Trace: ingest.Trace{Helo: "campaign test " + id, With: "campaign"},
		}), Body: msg})
	}
	rcs, err := s.sub.SubmitBatch(ctx, subs)
	if err != nil {
		return nil, fmt.Errorf("campaign: test send: %w", err)
	}
	var seq int64
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM campaign_tests WHERE campaign = "+s.arg(1), id).Scan(&seq); err != nil {
		return nil, fmt.Errorf("campaign: test send: %w", err)
	}
	out := make([]TestResult, len(to))
	for i, a := range to {
		out[i] = TestResult{To: a}
		if i < len(rcs) {
			out[i].QueueID = rcs[i].ID
			if rcs[i].Err != nil {
				out[i].Error = rcs[i].Err.Error()
			}
		}
		if _, err := s.db.ExecContext(ctx, "INSERT INTO campaign_tests (campaign, seq, rcpt, queue_id, error, at) VALUES ("+
			s.arg(1)+", "+s.arg(2)+", "+s.arg(3)+", "+s.arg(4)+", "+s.arg(5)+", "+s.arg(6)+") ON CONFLICT DO NOTHING",
			id, seq, a, out[i].QueueID, out[i].Error, time.Now().Unix()); err != nil {
			return out, fmt.Errorf("campaign: record test send: %w", err)
		}
	}
	return out, nil
}

// TestTag is the tracking tag of a campaign's test messages.
func TestTag(campaign string) string { return campaign + "#test" }

// buildTest is build with "[Test] " before the subject, tracked under
// tag with message key key (the contact id in its tokens is 0: a test
// engages no contact).
func (s Send) buildTest(r Recipient, tag, key string, now time.Time) ([]byte, error) {
	if s.Template == nil {
		return nil, errors.New("campaign: no template")
	}
	rendered, unsub := s.render(r, s.Stream)
	rendered.Subject = "[Test] " + rendered.Subject
	if err := s.Tracking.apply(&rendered, tag, key, r, s.Stream, s.From.Address, unsub, now); err != nil {
		return nil, err
	}
	return s.message(r, rendered, now)
}
