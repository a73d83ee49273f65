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
	case temporary && isServerCondition(r), isTooManyRecipients(r):
		return Unknown, RTemporaryFailure
	case isFullInbox(r) || c.Reason == "mailboxfull" && (r.Enhanced == "" || strings.HasSuffix(r.Enhanced, ".0.0")):
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

// isFullInbox reports a mailbox-full reply: the enhanced status says so
// (X.2.2, RFC 3463), or, without a specific one, the text says so or the
// reply is RFC 5321's 552 (exceeded storage allocation). A bare 452 is
// not enough: it also answers "too many recipients" (4.5.3) and
// "insufficient system storage" (4.3.1), which are about the transaction
// or the server, not the mailbox.
func isFullInbox(r reply) bool {
	if strings.HasSuffix(r.Enhanced, ".2.2") {
		return true
	}
	if r.Enhanced != "" && !strings.HasSuffix(r.Enhanced, ".0.0") {
		return false
	}
	return r.Code == 552 || bounce.Classify(0, "", r.Text).Reason == "mailboxfull"
}

// isTooManyRecipients reports the reply that ends a transaction's
// recipients (RFC 5321 4.5.3.1.10, RFC 3463 X.5.3): the address was not
// asked about, and the rest go in a new transaction. RFC 5321 notes that
// older servers answer it with 552, which clients treat as temporary: a
// 552 X.5.3, or a 552 without an enhanced code that says so, is it too
// (not a full mailbox).
func isTooManyRecipients(r reply) bool {
	if r.Code != 452 && r.Code != 552 {
		return false
	}
	return strings.HasSuffix(r.Enhanced, ".5.3") || r.Enhanced == "" && strings.Contains(strings.ToLower(r.Text), "too many recipients")
}

// isServerCondition reports a 4xx about the server or the network
// (RFC 3463 4.3.x mail system, 4.4.x network status), not the mailbox.
func isServerCondition(r reply) bool {
	return r.Code/100 == 4 && (strings.HasPrefix(r.Enhanced, "4.3.") || strings.HasPrefix(r.Enhanced, "4.4."))
}
