// Package dns owns Petrel's DNS lookups: a stub resolver on miekg/dns
// (UDP with TCP fallback on truncation) with a bounded, TTL-respecting
// cache of positive and negative answers, for MX (with RFC 7505 null MX
// and RFC 5321 implicit MX), A/AAAA, TXT and CNAME records. Delivery,
// sending-domain checks, address verification and tracking-domain checks
// all use one Resolver, so they share one cache.
//
// Lookup errors wrap ErrNullMX, ErrNoSuchDomain, ErrNoMailHost or
// ErrTemporary; test them with errors.Is.
package dns
