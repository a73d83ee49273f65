// Package tracking owns engagement tracking: HMAC-signed tokens bound to
// (message, recipient, link), sealing the recipient's mailbox provider
// and the message's stream (Signer), link rewriting in HTML parts with
// x/net/html and in text parts (RewriteHTML, RewriteText), the open
// pixel and the click redirect (Handler), and the classification of
// machine opens and clicks (Classify: Apple Mail Privacy Protection,
// link scanners, HEAD requests, clicks seconds after sending).
//
// A click token seals the original link target, so the redirect can
// only ever go where the message linked (no open redirect), and a token
// carries no email address: the message and recipient ids are the
// sender's opaque keys.
//
// It also owns the unsubscribe and preference pages (Preferences:
// per-list or full opt-out into the audience consent ledger and the
// suppression list, English and Traditional Chinese), the batched
// engagement log and its aggregates (Log), the delivery counters read
// from the event log (ApplyDeliveryEvents) and the stats API per
// campaign, provider, type and segment (StatsHandler), and custom
// tracking domains (Domains: CNAME checks through the dns package) with
// their ACME certificates (CertManager). It never writes queue keys.
package tracking
