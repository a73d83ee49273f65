// Package ingest owns how mail enters Petrel: the SMTP submission server
// (emersion/go-smtp, Backend/Session split) and the HTTP injection API.
// It enforces AUTH (PLAIN/LOGIN over TLS, or on loopback), relay permission
// (authenticated users and smtp.mynetworks only; anyone else may only
// reach local_domains), size and recipient limits, strict RFC 5321 address
// syntax, and 8-bit transparency rules; it adds Received, Message-ID and
// Date headers, picks the message's stream, asks Policy (suppression,
// sender domain status, final preparation such as DKIM) and acknowledges a
// message only after queue.Spool.Enqueue returned, i.e. after the message
// is durable (DESIGN invariant 1). It never delivers or retries.
//
// Decisions worth knowing:
//   - 8-bit bytes in DATA without BODY=8BITMIME or SMTPUTF8 on MAIL FROM
//     are accepted, as Postfix does (Python's smtplib and swaks send them);
//     delivery sends them with BODY=8BITMIME or converts them to 7-bit per
//     next hop.
//   - Errors are limited per session (smtp.hard_error_limit, growing
//     delays beyond smtp.soft_error_limit and for every failed AUTH) and
//     failed AUTH per client address across sessions (limits.go).
//   - RCPT TO:<postmaster> without a domain goes to smtp.postmaster
//     (postmaster.go: a clear-text command filter in front of go-smtp,
//     whose parser requires a domain).
//   - RCPT suppression is checked in the stream known at RCPT time (the
//     SMTP user's stream, else "transactional"). If an X-Petrel-Stream
//     header then moves the message to another stream, recipients
//     suppressed in that stream are dropped from the envelope; if none
//     remain, DATA gets 550 5.7.1.
//   - HTTP: when every recipient is suppressed nothing is queued and the
//     answer is 422 with code "all_suppressed".
//   - A DATA line longer than smtp.max_line_length gets 554 5.6.0; go-smtp's
//     line limit then closes the session (other sessions are unaffected).
//   - Built HTTP messages normalise line breaks to CRLF; raw messages get
//     bare LF turned into CRLF and are otherwise stored byte for byte.
//
// Wiring (cmd/petreld):
//
//	smtpSrv, err := ingest.NewSMTPServer(ingest.Options{Hostname: cfg.Hostname,
//		SMTP: cfg.SMTP, Spool: q, Policy: pol, Logger: log, Registry: reg})
//	go smtpSrv.ListenAndServe()            // or Serve(ln)
//	h := ingest.NewHTTPHandler(ingest.HTTPOptions{Hostname: cfg.Hostname,
//		Keys: httpapi.NewKeys(cfg.HTTP.APIKeys), MaxMessageSize: cfg.SMTP.MaxMessageSize,
//		Spool: q, Messages: q, Policy: pol, Logger: log, Registry: reg})
//	smtpSrv.Shutdown(ctx)                  // on SIGTERM, before closing q
package ingest
