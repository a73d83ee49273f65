// Package verify owns address verification: it tells whether a mailbox is
// worth sending to before anything is sent. Each address goes through four
// recorded stages — syntax (RFC 5321/5322, RFC 6531 internationalised
// addresses, IDNA), domain (NXDOMAIN kept apart from SERVFAIL/timeouts),
// MX (explicit, implicit via A/AAAA, null MX per RFC 7505) and an SMTP
// probe (EHLO, MAIL FROM, RCPT TO, RSET/QUIT; never DATA) with catch-all
// detection in the same session — and is flagged (disposable, role, free
// provider, catch-all, full inbox, disabled, typo suggestion) and given a
// verdict: deliverable, risky, undeliverable or unknown, with reasons.
//
// It serves single and bulk verification over HTTP (Handler) and keeps
// finished bulk jobs on disk. It resolves through delivery's Resolver,
// classifies replies with bounce.Classify, and never stores audiences.
// The JSON shape of a Result is documented in README.md.
package verify
