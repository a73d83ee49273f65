package verify

import (
	"strings"

	"github.com/petrel-mta/petrel/bounce"
)

// classify asks bounce's classifier for the category of a reply.
func classify(r reply) bounce.Classification {
	return bounce.Classify(r.Code, r.Enhanced, r.Text)
}

// bounce reasons (bounce/rules.toml) and what they say about a mailbox
// when they answer a RCPT probe.
var (
	// The mailbox does not exist or the domain takes no mail.
	reasonsDead = []string{"userunknown", "hostunknown", "hasmoved", "notaccept"}
	// The refusal is about the prober (IP, sender, policy, rate), not the
	// mailbox.
	reasonsProbeRefused = []string{"blocked", "badreputation", "spamdetected", "policyviolation", "requireptr",
		"authfailure", "norelaying", "notcompliantrfc", "rejected", "securityerror", "failedstarttls",
		"speeding", "toomanyconn"}
)

// replyVerdict maps one non-2xx RCPT reply to a verdict and reason code,
// using bounce's classification plus the RFC 3463 status where the
// classifier leaves a gap.
func replyVerdict(r reply) (Verdict, string) {
	c := classify(r)
	temporary := r.Code/100 == 4
	switch {
	case !temporary && (c.Reason == "suspend" || strings.HasSuffix(r.Enhanced, ".2.1")):
		return Undeliverable, RMailboxDisabled
	case c.Reason == "mailboxfull" || isFullInbox(r):
		return Risky, RMailboxFull
	case temporary && isGreylist(r):
		return Unknown, RGreylisted
	case temporary:
		return Unknown, RTemporaryFailure
	case in(c.Reason, reasonsDead) || strings.HasPrefix(r.Enhanced, "5.1."):
		return Undeliverable, RMailboxNotFound
	case in(c.Reason, reasonsProbeRefused) || strings.HasPrefix(r.Enhanced, "5.7."):
		return Unknown, RProbeBlocked
	case c.Hard:
		return Undeliverable, RRejected
	}
	// A permanent reply the classifier does not call hard (system error,
	// mailer error, ...): it does not prove the mailbox dead.
	return Unknown, RUnclassified
}

func in(s string, list []string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isGreylist: a 4xx asking to come back later (greylisting, deferral).
func isGreylist(r reply) bool {
	t := strings.ToLower(r.Text)
	return strings.Contains(t, "greylist") || strings.Contains(t, "graylist") || strings.Contains(t, "try again later") ||
		r.Enhanced == "4.7.1" || r.Enhanced == "4.7.0" || r.Code == 450 || r.Code == 451
}

// isFullInbox reports a mailbox-full reply (452/552 or X.2.2).
func isFullInbox(r reply) bool {
	return strings.HasSuffix(r.Enhanced, ".2.2") || r.Code == 452 || r.Code == 552
}
