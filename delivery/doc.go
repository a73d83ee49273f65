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
//
// Dead-host cache (hosts.go): an MX address whose connection failed is
// marked down for delivery.dead_host_time, doubling per further failure
// up to dead_host_max_time and reset by a successful connection; mail for
// it is deferred without connecting meanwhile, and an address not known
// to be up is probed by one transaction at a time. Batches an operator
// made due (queue.Batch.Forced: flush, release) ignore it.
package delivery
