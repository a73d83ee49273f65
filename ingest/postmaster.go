package ingest

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// RFC 5321 section 4.5.1: a server MUST accept RCPT TO:<postmaster>
// (case-insensitive, no domain) for its own postmaster. go-smtp (from
// v0.26.0) parses that forward-path itself and hands Rcpt the bare local
// part, in clear text and inside STARTTLS alike; Rcpt turns it into the
// configured postmaster address.

// isLocalPostmaster reports whether Rcpt's address is the bare
// <postmaster> (go-smtp passes it on as the client spelt it).
func isLocalPostmaster(to string) bool { return strings.EqualFold(to, "postmaster") }

// rcptPostmaster adds the configured postmaster address to the
// transaction. It needs no relay permission: the client cannot choose the
// destination, so this is not a relay. Suppression still applies.
func (se *session) rcptPostmaster() error {
	to := se.s.postmaster
	if reason, ok := se.s.p.suppressed(se.stream(), to); ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("<postmaster>: recipient suppressed (%s)", reason)}
	}
	se.s.log.Info("mail for the local postmaster", "client", se.ip.String(), "postmaster", to)
	se.rcpts = append(se.rcpts, to)
	return nil
}
