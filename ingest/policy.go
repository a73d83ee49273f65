package ingest

// This file is ingest's contract with policy: ingest asks, policy answers.
// A nil Policy accepts everything, signs nothing.

import "context"

// Policy is what ingest asks before it accepts a message.
type Policy interface {
	// Suppressed reports whether addr is suppressed in stream, and why.
	// SMTP answers RCPT with 550 5.7.1; HTTP reports the recipient as
	// "suppressed".
	Suppressed(stream, addr string) (reason string, ok bool)
	// CheckSender enforces require_domain_status for the From header's
	// domain; the error text names the missing record and is shown to the
	// client (SMTP 550 5.7.26 / HTTP 422).
	CheckSender(ctx context.Context, fromDomain string) error
	// Prepare runs once per message after ingest added its own headers:
	// it may add headers (List-Unsubscribe for marketing) and DKIM-sign.
	// rcpts are the accepted recipients. It returns the final bytes.
	Prepare(ctx context.Context, stream string, rcpts []string, msg []byte) ([]byte, error)
}

// RecipientChecker vets a recipient before it is accepted (verify at
// ingest: syntax, domain and MX). nil accepts every recipient.
type RecipientChecker interface {
	// RejectRecipient returns a reason and true when addr cannot receive
	// mail (no such domain, null MX, no mail host): SMTP answers RCPT with
	// 550 5.1.2, HTTP reports the recipient as "rejected". DNS failures
	// must not reject.
	RejectRecipient(ctx context.Context, addr string) (reason string, reject bool)
}
