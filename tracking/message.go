package tracking

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/petrel-mta/petrel/events"
	"github.com/petrel-mta/petrel/ingest"
)

// MessageRewrite tracks one rendered message: every http(s) link of the
// HTML and text parts becomes a signed click token (when Clicks) and the
// HTML part gets the open pixel (when Opens), under Base, the public base
// of the /t/ routes. Campaign mail (campaign.Tracking) and API messages
// (APITracker) both go through it.
type MessageRewrite struct {
	// Sign encodes a token (Signer.Encode).
	Sign func(Token) (string, error)
	// Base is "https://track.shop.example" (no trailing slash needed).
	Base string
	// Token is the template of every token: campaign, message,
	// recipient, sent, provider, stream; Kind, Link and URL are set here.
	Token         Token
	Opens, Clicks bool
	// Keep is a link left as it is (the recipient's own unsubscribe
	// link: it must work without a redirect and is not an engagement).
	Keep string
}

// Apply returns html and text rewritten. A link no token can carry
// (over 4 KiB) stays as it is.
func (m MessageRewrite) Apply(html, text string) (string, string, error) {
	base := strings.TrimRight(m.Base, "/")
	if base == "" || m.Sign == nil || !m.Opens && !m.Clicks {
		return html, text, nil
	}
	link := func(n int, href string) (string, bool) {
		if !m.Clicks || m.Keep != "" && href == m.Keep {
			return "", false
		}
		c := m.Token
		c.Kind, c.Link, c.URL = Click, n, href
		s, err := m.Sign(c)
		if err != nil {
			return "", false
		}
		return base + ClickPath + s, true
	}
	pixel := ""
	if m.Opens && html != "" {
		o := m.Token
		o.Kind, o.Link, o.URL = Open, 0, ""
		s, err := m.Sign(o)
		if err != nil {
			return "", "", fmt.Errorf("tracking: open token: %w", err)
		}
		pixel = base + OpenPath + s + ".gif"
	}
	if html != "" {
		html = RewriteHTML(html, link, pixel)
	}
	if text != "" && m.Clicks {
		text = RewriteText(text, link)
	}
	return html, text, nil
}

// APITracker applies the tracking settings to messages sent over
// POST /api/v1/messages (it implements ingest.MessageTracker): the API
// key's switches over the From domain's over the defaults, minus what the
// request opts out of. One body goes to every recipient of a message, so
// its tokens name the message (its Message-ID) and no recipient; the
// provider is the recipient's when there is one. Raw messages are not
// rewritten; only their List-Unsubscribe follows the settings.
type APITracker struct {
	Settings *Settings
	// Sign encodes a token (Signer.Encode).
	Sign func(Token) (string, error)
	// BaseURL is the public base of the tracking routes for a From
	// domain (its verified tracking domain, else the daemon's public
	// URL); "" leaves the message untracked.
	BaseURL func(ctx context.Context, fromDomain string) string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// TrackMessage implements ingest.MessageTracker.
func (t *APITracker) TrackMessage(ctx context.Context, m *ingest.TrackedMessage) error {
	dom := m.From[strings.LastIndexByte(m.From, '@')+1:]
	eff := t.Settings.For(m.Key, dom)
	off := func(b *bool) bool { return b != nil && !*b }
	if off(m.OptOut.Opens) {
		eff.Opens = false
	}
	if off(m.OptOut.Clicks) {
		eff.Clicks = false
	}
	if off(m.OptOut.Unsubscribe) {
		eff.Unsubscribe = ptr(false)
	}
	m.Unsubscribe = eff.Unsubscribe
	if m.Raw || !eff.Opens && !eff.Clicks || t.BaseURL == nil {
		return nil
	}
	base := t.BaseURL(ctx, dom)
	if base == "" {
		return nil
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	tok := Token{Campaign: m.Campaign, Message: m.MessageID, Sent: now().Unix(), Stream: m.Stream}
	if len(m.Rcpts) == 1 {
		tok.Provider = events.Provider("", m.Rcpts[0])
	}
	// A token bounds its ids: a longer campaign name or Message-ID is
	// cut (the stats group by the cut name) rather than failing the send.
	if len(tok.Message) > maxTokenField {
		tok.Message = tok.Message[:maxTokenField]
	}
	if len(tok.Campaign) > maxTokenField {
		tok.Campaign = tok.Campaign[:maxTokenField]
	}
	if len(tok.Stream) > maxLabel {
		tok.Stream = tok.Stream[:maxLabel]
	}
	var err error
	m.HTML, m.Text, err = MessageRewrite{Sign: t.Sign, Base: base, Token: tok, Opens: eff.Opens, Clicks: eff.Clicks}.Apply(m.HTML, m.Text)
	return err
}
