// Package tracking owns engagement tracking: HMAC-signed tokens bound to
// (message, recipient, link) (Signer), link rewriting in HTML parts with
// x/net/html and in text parts (RewriteHTML, RewriteText), the open
// pixel and the click redirect (Handler), and the classification of
// machine opens and clicks (Classify: Apple Mail Privacy Protection,
// link scanners, HEAD requests, clicks seconds after sending).
//
// A click token seals the original link target, so the redirect can
// only ever go where the message linked (no open redirect), and a token
// carries no email address: the message and recipient ids are the
// sender's opaque keys. The unsubscribe and preference pages, custom
// tracking domains, the batched engagement log and the stats aggregates
// belong here too (ARCHITECTURE.md); tracking never writes queue keys.
package tracking
