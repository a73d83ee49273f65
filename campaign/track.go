package campaign

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/tracking"
)

// Tracking makes a send's messages trackable: every http(s) link of the
// HTML and text parts is rewritten to a signed click token and the HTML
// part gets the open pixel (tracking.RewriteHTML, tracking.RewriteText),
// under the public base URL of the /t/ routes. A token carries the
// campaign tag, the message's idempotency key and the contact id, never
// the address.
type Tracking struct {
	// Sign encodes a token (tracking.Signer.Encode).
	Sign func(tracking.Token) (string, error)
	// BaseURL gives the public base of the tracking routes for a From
	// domain ("https://track.shop.example": its verified tracking
	// domain, else the daemon's public URL); "" means there is no public
	// base and the send is not tracked (a link to a private listener
	// would break every link of the message). Service asks it once per
	// send.
	BaseURL func(fromDomain string) string
	// Opens and Clicks say what is tracked.
	Opens, Clicks bool
}

// apply rewrites rendered for recipient r of the send tagged campaign.
// The recipient's own unsubscribe link (unsub) is left as it is: it must
// work without a redirect and is not an engagement.
func (t *Tracking) apply(rendered *Rendered, campaign, message string, r Recipient, stream, from, unsub string, now time.Time) error {
	if t == nil || t.Sign == nil || !t.Opens && !t.Clicks {
		return nil
	}
	base := strings.TrimRight(t.BaseURL(domainOf(from)), "/")
	if base == "" {
		return nil
	}
	tok := tracking.Token{Campaign: campaign, Message: message, Recipient: strconv.FormatInt(r.ID, 10),
		Sent: now.Unix(), Provider: events.Provider("", r.Email), Stream: stream}
	link := func(n int, href string) (string, bool) {
		if !t.Clicks || unsub != "" && href == unsub {
			return "", false
		}
		c := tok
		c.Kind, c.Link, c.URL = tracking.Click, n, href
		s, err := t.Sign(c)
		if err != nil {
			return "", false // a link no token can carry (over 4 KiB) stays as it is
		}
		return base + "/t/c/" + s, true
	}
	pixel := ""
	if t.Opens && rendered.HTML != "" {
		o := tok
		o.Kind = tracking.Open
		s, err := t.Sign(o)
		if err != nil {
			return fmt.Errorf("campaign: open token: %w", err)
		}
		pixel = base + "/t/o/" + s + ".gif"
	}
	if rendered.HTML != "" {
		rendered.HTML = tracking.RewriteHTML(rendered.HTML, link, pixel)
	}
	if rendered.Text != "" {
		rendered.Text = tracking.RewriteText(rendered.Text, link)
	}
	return nil
}

// domainOf is the domain of an address.
func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// once returns t with BaseURL resolved for from's domain now, so a send
// asks it once rather than per message.
func (t *Tracking) once(from string) *Tracking {
	c := *t
	base := t.BaseURL(domainOf(from))
	c.BaseURL = func(string) string { return base }
	return &c
}
