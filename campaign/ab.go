package campaign

// A/B tests. Every recipient falls in one bucket 0..99 by a hash of
// (campaign, contact id): stable across restarts and page boundaries, so
// a contact is in exactly one group. With variants a, b and 10 percent
// each, buckets 0-9 get a, 10-19 get b (the test phase) and 20-99 (the
// rest) get the winner. The test phase and the rest are two engine runs
// with their own durable cursors (campaign_progress keys <id>#test and
// <id>#rest); between them the campaign waits Wait after the test phase
// ended (that instant is durable too), then picks the variant with the
// most unique human opens or clicks from tracking's aggregates (each
// variant's messages carry the campaign tag <id>.<variant>). Every
// message of every phase keeps the idempotency key campaign:<id>:<contact>,
// so exactly-once holds across variants and kills.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"time"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// ABTest is a campaign's A/B test.
type ABTest struct {
	// Variants override the campaign's subject, content or sender (an
	// empty field keeps the campaign's). 2 to 4.
	Variants []Variant `json:"variants"`
	// Percent is the share of recipients each variant is tested on.
	Percent int `json:"percent"`
	// Metric picks the winner: "opens" (unique human opens, the
	// default) or "clicks" (unique human clicks).
	Metric string `json:"metric,omitempty"`
	// Wait is how long after the test phase the winner is chosen
	// (Go duration, e.g. "4h"; default 4h).
	Wait string `json:"wait,omitempty"`
}

// Variant is one arm of an A/B test.
type Variant struct {
	Name     string `json:"name"`
	Subject  string `json:"subject,omitempty"`
	HTML     string `json:"html,omitempty"`
	Text     string `json:"text,omitempty"`
	From     string `json:"from,omitempty"`
	FromName string `json:"from_name,omitempty"`
}

// ABState is where an A/B test is (in Campaign.AB).
type ABState struct {
	Test State `json:"test"`
	Rest State `json:"rest"`
	// TestDoneAt is when the test phase ended; the winner is chosen
	// Wait later.
	TestDoneAt *time.Time `json:"test_done_at,omitempty"`
	Winner     string     `json:"winner,omitempty"`
	// Scores are the metric per variant when the winner was chosen.
	Scores map[string]int64 `json:"scores,omitempty"`
}

var variantName = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

func (ab *ABTest) wait() time.Duration {
	if ab.Wait == "" {
		return 4 * time.Hour
	}
	d, _ := time.ParseDuration(ab.Wait)
	return d
}

func (ab *ABTest) validate() error {
	if n := len(ab.Variants); n < 2 || n > 4 {
		return fmt.Errorf("campaign: an A/B test has 2 to 4 variants, not %d", n)
	}
	seen := map[string]bool{}
	for _, v := range ab.Variants {
		if !variantName.MatchString(v.Name) || seen[v.Name] {
			return fmt.Errorf("campaign: variant name %q must be unique, 1-16 of a-z and 0-9", v.Name)
		}
		seen[v.Name] = true
	}
	if ab.Percent < 1 || ab.Percent*len(ab.Variants) > 100 {
		return fmt.Errorf("campaign: A/B percent %d: each variant gets 1 to %d percent", ab.Percent, 100/len(ab.Variants))
	}
	if ab.Metric != "" && ab.Metric != "opens" && ab.Metric != "clicks" {
		return fmt.Errorf("campaign: A/B metric %q: opens or clicks", ab.Metric)
	}
	if ab.Wait != "" {
		d, err := time.ParseDuration(ab.Wait)
		if err != nil || d < 0 || d > 30*24*time.Hour {
			return fmt.Errorf("campaign: A/B wait %q: a duration up to 720h", ab.Wait)
		}
	}
	return nil
}

// bucket is contact's stable bucket 0..99 in campaign.
func bucket(campaign string, contact int64) int {
	h := fnv.New64a()
	h.Write([]byte(campaign))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, contact, 10))
	return int(h.Sum64() % 100)
}

// variantOf is the index of the test variant of contact, or -1 when it
// is in the rest.
func (ab *ABTest) variantOf(campaign string, contact int64) int {
	b := bucket(campaign, contact)
	if b < ab.Percent*len(ab.Variants) {
		return b / ab.Percent
	}
	return -1
}

// variantSpec is sp with v's overrides (and no A/B test).
func variantSpec(sp Spec, v Variant) Spec {
	sp.AB = nil
	if v.Subject != "" {
		sp.Subject = v.Subject
	}
	if v.HTML != "" || v.Text != "" {
		sp.HTML, sp.Text = v.HTML, v.Text
	}
	if v.From != "" {
		sp.From = v.From
	}
	if v.FromName != "" {
		sp.FromName = v.FromName
	}
	if sp.Template != "" && (v.Subject != "" || v.HTML != "" || v.Text != "") {
		// A variant with its own content replaces the template's.
		sp.Template, sp.TemplateVersion = "", 0
	}
	return sp
}

// VariantTag is the campaign name a variant's messages carry (tracking
// aggregates engagement under it).
func VariantTag(campaign, variant string) string { return campaign + "." + variant }

// phaseSource keeps the recipients of one phase of an A/B test; the
// others pass (the cursor moves over them, nothing is counted).
type phaseSource struct {
	Source
	keep func(contact int64) bool
}

func (p phaseSource) Page(ctx context.Context, after int64, limit int) ([]Recipient, error) {
	rs, err := p.Source.Page(ctx, after, limit)
	for i := range rs {
		if !p.keep(rs[i].ID) {
			rs[i].Pass = true
		}
	}
	return rs, err
}

// abState loads the A/B progress of id.
func (s *Service) abState(ctx context.Context, id string) (ABState, error) {
	var ab ABState
	var err error
	if ab.Test, err = s.prog.Load(ctx, id+"#test"); err != nil {
		return ab, err
	}
	if ab.Rest, err = s.prog.Load(ctx, id+"#rest"); err != nil {
		return ab, err
	}
	meta, err := s.prog.Load(ctx, id+"#ab")
	if err != nil {
		return ab, err
	}
	if meta.After != 0 {
		t := time.Unix(meta.After, 0).UTC()
		ab.TestDoneAt = &t
	}
	ab.Winner, ab.Scores = meta.Winner, meta.Skipped
	return ab, nil
}

// sum is the combined progress of both phases.
func (ab ABState) sum() State {
	st := State{Sent: ab.Test.Sent + ab.Rest.Sent, Done: ab.Rest.Done, Skipped: map[string]int64{}, After: ab.Rest.After}
	for _, m := range []map[string]int64{ab.Test.Skipped, ab.Rest.Skipped} {
		for k, v := range m {
			st.Skipped[k] += v
		}
	}
	return st
}

// runAB runs both phases of an A/B campaign, waiting for the winner in
// between; it returns the rest phase's final state.
func (s *Service) runAB(ctx context.Context, sp Spec, stop <-chan struct{}, guard func() error, key *httpapi.Key, src Source) (State, error) {
	ab := sp.AB
	sends := make([]Send, len(ab.Variants))
	for i, v := range ab.Variants {
		vsp := variantSpec(sp, v)
		tpl, err := s.compile(ctx, vsp)
		if err != nil {
			return State{}, fmt.Errorf("variant %s: %w", v.Name, err)
		}
		sends[i] = s.sendOf(vsp, tpl, stop)
		sends[i].Key = key
		sends[i].Tag = VariantTag(sp.ID, v.Name)
	}
	test := sends[0]
	test.ProgressKey, test.Guard = sp.ID+"#test", guard
	test.Variant = func(r Recipient) *Send { return &sends[ab.variantOf(sp.ID, r.ID)] }
	if _, err := s.engine.Run(ctx, test, phaseSource{src, func(c int64) bool { return ab.variantOf(sp.ID, c) >= 0 }}); err != nil {
		return State{}, err
	}
	meta, err := s.prog.Load(ctx, sp.ID+"#ab")
	if err != nil {
		return State{}, err
	}
	if meta.After == 0 {
		meta.After = time.Now().Unix()
		if err := s.prog.Save(ctx, sp.ID+"#ab", meta); err != nil {
			return State{}, err
		}
	}
	if meta.Winner == "" {
		if wait := time.Until(time.Unix(meta.After, 0).Add(ab.wait())); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return State{}, ctx.Err()
			case <-stop:
				t.Stop()
				return State{}, ErrStopped
			case <-t.C:
			}
		}
		if meta.Winner, meta.Skipped, err = s.pickWinner(ab, sp.ID); err != nil {
			return State{}, err
		}
		if err := s.prog.Save(ctx, sp.ID+"#ab", meta); err != nil {
			return State{}, err
		}
		s.log.Info("A/B test winner", "campaign", sp.ID, "winner", meta.Winner, "scores", meta.Skipped)
	}
	var rest Send
	for i, v := range ab.Variants {
		if v.Name == meta.Winner {
			rest = sends[i]
		}
	}
	if rest.Template == nil {
		return State{}, fmt.Errorf("campaign %s: winner %q is no variant", sp.ID, meta.Winner)
	}
	rest.ProgressKey, rest.Guard, rest.Tag = sp.ID+"#rest", guard, ""
	return s.engine.Run(ctx, rest, phaseSource{src, func(c int64) bool { return ab.variantOf(sp.ID, c) < 0 }})
}

// pickWinner asks the engagement aggregates for each variant's unique
// opens (or clicks); the first variant wins ties.
func (s *Service) pickWinner(ab *ABTest, id string) (string, map[string]int64, error) {
	if s.opts.Engagement == nil {
		return "", nil, errors.New("campaign: A/B test without engagement stats (tracking)")
	}
	scores := map[string]int64{}
	best, winner := int64(-1), ""
	for _, v := range ab.Variants {
		opens, clicks, err := s.opts.Engagement(VariantTag(id, v.Name))
		if err != nil {
			return "", nil, fmt.Errorf("campaign: engagement of %s: %w", v.Name, err)
		}
		n := opens
		if ab.Metric == "clicks" {
			n = clicks
		}
		scores[v.Name] = n
		if n > best {
			best, winner = n, v.Name
		}
	}
	return winner, scores, nil
}
