package ingest

// This file is ingest's contract with policy: ingest asks, policy answers.
// A nil Policy accepts everything, signs nothing.

import (
	"context"

	"github.com/petrel-mta/petrel/mta"
)

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
	// PrepareMessage runs once per message after ingest added its trace
	// fields, with m's Stream, Rcpts (the accepted recipients), Sender and
	// Generated set: it may add fields (m.Insert: List-Unsubscribe for
	// marketing) and DKIM-sign over m as it will be queued
	// (m.AddSignature). It works on m's header index: it must neither
	// parse nor copy the message. An error is temporary (SMTP 451).
	PrepareMessage(ctx context.Context, m *mta.Message) error
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
