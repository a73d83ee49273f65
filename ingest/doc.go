// Package ingest owns how mail enters Petrel: the SMTP submission server
// (emersion/go-smtp, Backend/Session split, served by internal/smtpserver
// as bounce's inbound listener is), the HTTP injection API, and the one
// entry point every message goes through, Submitter (Submit, SubmitBatch
// for the campaign engine, and Prepare for the queue's DSN hook, which
// commits a DSN with the bounce that caused it). Like Postfix's cleanup,
// the Submitter parses the header once into an index (mta.Message),
// refuses NUL bytes and mail loops, picks the stream, checks suppression
// once per recipient, checks the sender domain, adds Received (and
// Message-ID/Date when missing), lets Policy add List-Unsubscribe and
// DKIM-sign over the index, and commits in one synced batch: the pieces
// (new fields + the client's bytes) are copied once, straight into the
// queue's batch. It acknowledges only after the commit (DESIGN invariant
// 1). It never delivers or retries.
//
// The SMTP server enforces AUTH (PLAIN/LOGIN over TLS, or on loopback),
// relay permission (authenticated users and smtp.mynetworks only; anyone
// else may only reach local_domains), size and recipient limits, strict
// RFC 5321 address syntax, and 8-bit transparency rules.
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
//     (postmaster.go), in clear text and after STARTTLS.
//   - NUL bytes are refused, never stripped: SMTP 554 5.6.0, HTTP 422
//     "nul_byte".
//   - More than smtp.hop_count_limit (default 50) Received plus
//     Delivered-To fields is a mail loop: SMTP 554 5.4.6 at the end of
//     DATA, HTTP 422 "mail_loop".
//   - RCPT suppression is checked in the stream known at RCPT time (the
//     SMTP user's stream, else "transactional"); Submit does not check
//     those recipients again unless an X-Petrel-Stream header moves the
//     message to another stream: recipients suppressed in that stream are
//     dropped from the envelope; if none remain, DATA gets 550 5.7.1.
//   - HTTP: when every recipient is suppressed nothing is queued and the
//     answer is 422 with code "all_suppressed".
//   - A database API key's limits (Envelope.OnlyStream, SenderDomains,
//     from httpapi.Key) are checked on the final stream and on the From
//     field's and envelope sender's domains (a listed domain or a
//     subdomain of one): HTTP 403 "stream_not_allowed" or
//     "domain_not_allowed", SMTP 550 5.7.1; nothing is queued.
//   - HTTP Bcc: a "Bcc" in headers adds its addresses to the envelope and
//     is never written; a raw message's Bcc fields are removed (the
//     envelope is "to"). SMTP relays DATA as sent.
//   - A DATA line longer than smtp.max_line_length gets 554 5.6.0; go-smtp's
//     line limit then closes the session (other sessions are unaffected).
//   - Built HTTP messages normalise line breaks to CRLF; raw messages get
//     bare LF turned into CRLF and are otherwise stored byte for byte.
//   - Generated mail (DSNs) gets "Received: by HOST (Petrel) id ...", no
//     sender-domain check and no List-Unsubscribe.
//
// Measured (BenchmarkCopiesSMTP/HTTP in copies_test.go, 274 KB message,
// real policy engine with List-Unsubscribe and Ed25519 DKIM): Petrel's own
// code copies the message once (into the queue's batch) over SMTP and
// twice over HTTP (the JSON string to bytes, then the batch), and parses
// its header once (TestOneParsePerMessage).
//
// Wiring (cmd/petreld):
//
//	dsn := bounce.NewDSNHook(cfg.Hostname, cfg.Bounce.Domain, nil, log)
//	q, _ := queue.Open(dir, queue.Options{OnFailure: dsn.OnFailure, ...})
//	sub := ingest.NewSubmitter(ingest.SubmitOptions{Hostname: cfg.Hostname, Spool: q,
//		Policy: pol, HopCountLimit: cfg.SMTP.HopCountLimit, Logger: log, Registry: reg})
//	dsn.Use(sub)                           // before the queue delivers
//	smtpSrv, err := ingest.NewSMTPServer(ingest.Options{Hostname: cfg.Hostname,
//		SMTP: cfg.SMTP, Submitter: sub, Logger: log, Registry: reg})
//	go smtpSrv.ListenAndServe()            // or Serve(ln)
//	h := ingest.NewHTTPHandler(ingest.HTTPOptions{Hostname: cfg.Hostname,
//		Keys: httpapi.NewKeys(cfg.HTTP.APIKeys), MaxMessageSize: cfg.SMTP.MaxMessageSize,
//		Submitter: sub, Messages: q, Logger: log, Registry: reg})
//	smtpSrv.Shutdown(ctx)                  // on SIGTERM, before closing q
package ingest
