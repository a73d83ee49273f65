// Package delivery owns outbound mail: MX/A/AAAA/TXT resolution with a
// TTL-respecting cache (dns.Resolver), a pipelining SMTP client on
// net/textproto, connection pools per egress and destination, STARTTLS,
// and the worker loop that turns queue batches into SMTP transactions and
// per-recipient results (Deliverer). It asks policy (mta.Shaper, mta.Suppressor)
// before connecting and before each message; it never decides rates.
//
// STARTTLS choice: when opportunistic STARTTLS fails (handshake error or
// a non-2xx reply to STARTTLS) the same host is retried once in clear
// text, as Postfix does; when TLS is required (permit or
// delivery.require_tls) the host counts as failed and the next is tried.
package delivery
