package campaign

// The pre-send check. It renders the campaign for a real recipient (the
// first one the send would mail, or a sample) and looks at everything
// that should stop a send before it starts: the sending domain's
// authentication status, compliance (postal address, unsubscribe link),
// the template against the audience's current fields, the links, the
// size, and the spam score from a real content filter. A "fail" item
// blocks Send, Resume and the scheduler's start (re-run at send time);
// "warn" items are shown only. The last result is stored with the
// campaign.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html/atom"
)

// Check item states.
const (
	CheckPass = "pass"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// CheckItem is one check and what it found.
type CheckItem struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// CheckResult is the outcome of a pre-send check.
type CheckResult struct {
	// OK is false when any item failed: the send is blocked.
	OK      bool        `json:"ok"`
	Checked time.Time   `json:"checked"`
	Items   []CheckItem `json:"items"`
	// Spam is the content filter's verdict (nil when it did not answer).
	Spam *SpamResult `json:"spam,omitempty"`
	// Size is the rendered sample message in bytes.
	Size int `json:"size"`
}

// CheckError is a pre-send check that blocks the send (HTTP 422).
type CheckError struct {
	Result CheckResult
}

func (e *CheckError) Error() string {
	var fails []string
	for _, it := range e.Result.Items {
		if it.Status == CheckFail {
			fails = append(fails, it.Name+": "+it.Detail)
		}
	}
	return "campaign: pre-send check failed: " + strings.Join(fails, "; ")
}

// gmailClipBytes is where Gmail clips a message ("[Message clipped]").
const gmailClipBytes = 102 << 10

// CheckOptions configure the pre-send check (Options.Check).
type CheckOptions struct {
	// SenderDomain reports whether the From domain may send campaigns
	// (policy.Engine.SendingDomainReady at CampaignDomainStatus); nil
	// skips the check with a warning.
	SenderDomain func(domain string) error
	// Filter is the content filter; nil warns that none is configured.
	Filter ContentFilter
	// Threshold is the spam score above which the send is blocked
	// (default 5).
	Threshold float64
	// FilterOptional lets a send go on while the filter is unreachable
	// (the operator's override; the check then warns instead of failing).
	FilterOptional bool
	// Hostname is told to the filter as the sending host.
	Hostname string
}

// Check runs the pre-send check of id, stores its result with the
// campaign and returns it.
func (s *Service) Check(ctx context.Context, id string) (CheckResult, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return CheckResult{}, err
	}
	res := s.check(ctx, c)
	raw, err := json.Marshal(res)
	if err != nil {
		return res, fmt.Errorf("campaign: check: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, "UPDATE campaigns SET check_result = "+s.arg(1)+" WHERE id = "+s.arg(2), string(raw), id); err != nil {
		return res, fmt.Errorf("campaign: store check: %w", err)
	}
	return res, nil
}

// checkBeforeSend runs and stores the check; a blocking result is a
// *CheckError.
func (s *Service) checkBeforeSend(ctx context.Context, c Campaign) error {
	if _, err := s.sendingKey(ctx, c.Spec); err != nil {
		return err
	}
	res, err := s.Check(ctx, c.Spec.ID)
	if err != nil {
		return err
	}
	if !res.OK {
		return &CheckError{Result: res}
	}
	return nil
}

func (s *Service) check(ctx context.Context, c Campaign) CheckResult {
	res := CheckResult{OK: true, Checked: time.Now().UTC().Truncate(time.Second)}
	add := func(name, status, detail string) {
		res.Items = append(res.Items, CheckItem{Name: name, Status: status, Detail: detail})
		if status == CheckFail {
			res.OK = false
		}
	}
	sp := c.Spec
	co := s.opts.Check

	// The sending domain.
	from, err := mail.ParseAddress(sp.From)
	switch {
	case err != nil:
		add("sending_domain", CheckFail, fmt.Sprintf("from %q: %v", sp.From, err))
	case co.SenderDomain == nil:
		add("sending_domain", CheckWarn, "no sending-domain registry to check against")
	default:
		domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
		if err := co.SenderDomain(domain); err != nil {
			add("sending_domain", CheckFail, err.Error())
		} else {
			add("sending_domain", CheckPass, domain)
		}
	}

	// Compliance.
	if sp.stream() == "marketing" {
		switch {
		case strings.TrimSpace(sp.PostalAddress) == "":
			add("compliance", CheckFail, "no postal address (CAN-SPAM)")
		case s.unsub == nil || s.unsub("marketing", sp.From) == "":
			add("compliance", CheckFail, "no unsubscribe link: set [sending] unsubscribe_url")
		default:
			add("compliance", CheckPass, "postal address and unsubscribe link")
		}
	}

	fromAddr := sp.From
	if from != nil {
		fromAddr = from.Address
	}
	s.checkContent(ctx, sp, fromAddr, "", add, &res)
	if sp.AB != nil {
		// Every variant is checked like the campaign: a spammy subject
		// in one of them blocks the send too.
		for _, v := range sp.AB.Variants {
			vsp := variantSpec(sp, v)
			vfrom := fromAddr
			if v.From != "" {
				a, err := mail.ParseAddress(v.From)
				if err != nil {
					add(v.Name+"/sending_domain", CheckFail, err.Error())
					continue
				}
				vfrom = a.Address
				if co.SenderDomain != nil {
					if err := co.SenderDomain(vfrom[strings.LastIndexByte(vfrom, '@')+1:]); err != nil {
						add(v.Name+"/sending_domain", CheckFail, err.Error())
					}
				}
			}
			s.checkContent(ctx, vsp, vfrom, v.Name+"/", add, nil)
		}
	}
	return res
}

// checkContent checks sp's content (the campaign's, or an A/B variant's
// with item names prefixed): template, rendering, size, links, images and
// the content filter. res, when not nil, gets the size and spam verdict.
func (s *Service) checkContent(ctx context.Context, sp Spec, from, prefix string, add0 func(name, status, detail string), res *CheckResult) {
	co := s.opts.Check
	add := func(name, status, detail string) { add0(prefix+name, status, detail) }
	// The template against the audience's fields as they are now.
	tpl, err := s.compile(ctx, sp)
	if err != nil {
		add("template", CheckFail, err.Error())
		return
	}
	add("template", CheckPass, fmt.Sprintf("fields %s", strings.Join(tpl.Fields, ", ")))
	for _, w := range tpl.Warnings {
		add("html", CheckWarn, w)
	}

	// Render for the first recipient the send would mail: the links and
	// images are checked as the author wrote them, the size and the
	// content filter see the message as it is sent (tracked: click
	// tokens, open pixel).
	r := s.sampleRecipient(ctx, sp)
	send := s.sendOf(sp, tpl, nil)
	rendered, _ := send.render(r, send.Stream)
	msg, err := send.build(r, send.Stream, time.Now(), nil)
	if err != nil {
		add("message", CheckFail, err.Error())
		return
	}
	if res != nil {
		res.Size = len(msg)
	}
	if len(msg) > gmailClipBytes {
		add("size", CheckWarn, fmt.Sprintf("%d bytes: Gmail clips messages over 102 KB", len(msg)))
	} else {
		add("size", CheckPass, fmt.Sprintf("%d bytes", len(msg)))
	}
	if bad := checkLinks(rendered.HTML); len(bad) > 0 {
		add("links", CheckFail, strings.Join(bad, "; "))
	} else {
		add("links", CheckPass, "")
	}
	if rendered.HTML != "" && imageOnly(rendered.HTML) {
		add("image_only", CheckWarn, "the HTML is (almost) only images: filters score that as spam and readers see nothing with images off")
	}

	// The content filter.
	if co.Filter == nil {
		add("content_filter", CheckWarn, "no content filter configured ([esp] content_filter)")
		return
	}
	threshold := co.Threshold
	if threshold <= 0 {
		threshold = 5
	}
	spam, err := co.Filter.Score(ctx, msg, FilterEnvelope{From: from, Rcpt: r.Email, Hostname: co.Hostname})
	switch {
	case err != nil && co.FilterOptional:
		add("content_filter", CheckWarn, "content filter unreachable (sending allowed by content_filter_optional): "+err.Error())
	case err != nil:
		add("content_filter", CheckFail, "content filter unreachable: "+err.Error())
	default:
		spam.Threshold = threshold
		if res != nil {
			res.Spam = &spam
		}
		// The rules that scored; when none did (rspamd's GTUBE rejects
		// with a 0-score symbol), every rule that hit.
		var hits, all []string
		for _, sym := range spam.Symbols {
			h := fmt.Sprintf("%s(%.2f)", sym.Name, sym.Score)
			if sym.Score != 0 {
				hits = append(hits, h)
			}
			all = append(all, h)
		}
		if len(hits) == 0 {
			hits = all
		}
		detail := fmt.Sprintf("%s score %.2f (threshold %.2f, action %q): %s", spam.Filter, spam.Score, threshold, spam.Action, strings.Join(hits, " "))
		if spam.Score > threshold || spam.Action == "reject" {
			add("content_filter", CheckFail, detail)
		} else {
			add("content_filter", CheckPass, detail)
		}
	}
}

// sampleRecipient is the first contact the send would mail, or a sample.
func (s *Service) sampleRecipient(ctx context.Context, sp Spec) Recipient {
	src, err := s.source(ctx, sp)
	if err != nil {
		src = AudienceSource{Store: s.aud, Audience: sp.Audience, Segment: sp.Segment}
	}
	var after int64
	for range 5 {
		rs, err := src.Page(ctx, after, 100)
		if err != nil || len(rs) == 0 {
			break
		}
		for _, r := range rs {
			if r.Skip == "" {
				return r
			}
		}
		after = rs[len(rs)-1].ID
	}
	return Recipient{Email: "recipient@example.com", Name: "Sample Recipient", Values: Map{"email": "recipient@example.com", "name": "Sample Recipient", "first_name": "Sample"}}
}

// checkLinks returns what is wrong with the links of an HTML body: every
// href must be an absolute http(s) URL with a host, or mailto:/tel:;
// javascript: links are refused.
func checkLinks(src string) []string {
	var bad []string
	eachTag(src, func(name string, attrs [][2]string) {
		if a := atom.Lookup([]byte(name)); a != atom.A && a != atom.Area {
			return
		}
		for _, kv := range attrs {
			if kv[0] != "href" {
				continue
			}
			if p := linkProblem(strings.TrimSpace(kv[1])); p != "" && len(bad) < 20 {
				bad = append(bad, p)
			}
		}
	})
	return bad
}

func linkProblem(href string) string {
	if href == "" || strings.HasPrefix(href, "#") {
		return ""
	}
	u, err := url.Parse(href)
	if err != nil {
		return fmt.Sprintf("%q does not parse: %v", href, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return fmt.Sprintf("%q has no host", href)
		}
		return ""
	case "mailto", "tel":
		return ""
	case "":
		return fmt.Sprintf("%q is relative: mail needs absolute links", href)
	case "javascript":
		return fmt.Sprintf("%q: javascript: links do not work in mail", href)
	default:
		return fmt.Sprintf("%q: scheme %s", href, u.Scheme)
	}
}

// imageOnly reports an HTML body with images and (almost) no text.
func imageOnly(src string) bool {
	if !strings.Contains(strings.ToLower(src), "<img") {
		return false
	}
	text := HTMLToText(src)
	words := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "[") || strings.Contains(line, "://") {
			continue
		}
		words += len(strings.Fields(line))
	}
	return words < 20
}
