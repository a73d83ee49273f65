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
// part gets the open pixel (tracking.MessageRewrite), under the public
// base URL of the /t/ routes. A token carries the campaign tag, the
// message's idempotency key and the contact id, never the address.
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
	// Defaults, when set, gives the open and click tracking of a send
	// under the API key named key ("" for none) from fromDomain
	// (tracking.Settings.For: the key's switches over the domain's); a
	// campaign's track_opens and track_clicks override them. Nil: both on.
	Defaults func(key, fromDomain string) (opens, clicks bool)
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
	tok := tracking.Token{Campaign: campaign, Message: message, Recipient: strconv.FormatInt(r.ID, 10),
		Sent: now.Unix(), Provider: events.Provider("", r.Email), Stream: stream}
	var err error
	rendered.HTML, rendered.Text, err = tracking.MessageRewrite{Sign: t.Sign, Base: t.BaseURL(domainOf(from)), Token: tok,
		Opens: t.Opens, Clicks: t.Clicks, Keep: unsub}.Apply(rendered.HTML, rendered.Text)
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	return nil
}

// domainOf is the domain of an address.
func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// forSend returns t for one send from from: BaseURL resolved now (a send
// asks it once rather than per message), and Opens and Clicks from the
// campaign's own opens and clicks when set, else from the From domain's
// defaults.
func (t *Tracking) forSend(from, key string, opens, clicks *bool) *Tracking {
	c := *t
	base := t.BaseURL(domainOf(from))
	c.BaseURL = func(string) string { return base }
	c.Opens, c.Clicks = true, true
	if t.Defaults != nil {
		c.Opens, c.Clicks = t.Defaults(key, domainOf(from))
	}
	if opens != nil {
		c.Opens = *opens
	}
	if clicks != nil {
		c.Clicks = *clicks
	}
	return &c
}
