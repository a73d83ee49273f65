package verify

import "testing"

// TestReplyVerdict maps real-world RCPT replies (through bounce's
// classifier) to verdicts.
func TestReplyVerdict(t *testing.T) {
	cases := []struct {
		r       reply
		verdict Verdict
		reason  string
	}{
		{reply{550, "5.1.1", "user unknown"}, Undeliverable, RMailboxNotFound},
		{reply{550, "", "No such user here"}, Undeliverable, RMailboxNotFound},
		{reply{551, "5.1.6", "user has moved"}, Undeliverable, RMailboxNotFound},
		{reply{550, "5.2.1", "account disabled"}, Undeliverable, RMailboxDisabled},
		{reply{550, "", "This account has been suspended"}, Undeliverable, RMailboxDisabled},
		{reply{552, "5.2.2", "mailbox full"}, Risky, RMailboxFull},
		{reply{452, "4.2.2", "over quota"}, Risky, RMailboxFull},
		{reply{450, "4.7.1", "greylisted, try again later"}, Unknown, RGreylisted},
		{reply{451, "", "Temporary local problem"}, Unknown, RGreylisted},
		{reply{421, "4.7.0", "too many connections"}, Unknown, RGreylisted},
		{reply{554, "5.7.1", "Service unavailable; client host blocked using a blocklist"}, Unknown, RProbeBlocked},
		{reply{550, "5.7.1", "relaying denied"}, Unknown, RProbeBlocked},
		{reply{550, "5.7.606", "Access denied, banned sending IP"}, Unknown, RProbeBlocked},
		// Only X.2.2, or text that says so, is a full mailbox; 452 is
		// also "too many recipients" (4.5.3) and a server condition
		// (4.3.x).
		{reply{452, "4.5.3", "Too many recipients"}, Unknown, RTemporaryFailure},
		{reply{452, "", "Too many recipients"}, Unknown, RTemporaryFailure},
		{reply{452, "4.3.1", "Insufficient system storage"}, Unknown, RTemporaryFailure},
		{reply{452, "4.4.5", "Insufficient system storage"}, Unknown, RTemporaryFailure},
		{reply{452, "", "Mailbox full"}, Risky, RMailboxFull},
		{reply{552, "", "Requested mail action aborted: exceeded storage allocation"}, Risky, RMailboxFull},
		// RFC 5321 4.5.3.1.10: older servers say "too many recipients"
		// with 552; it is still not the mailbox.
		{reply{552, "", "Too many recipients"}, Unknown, RTemporaryFailure},
		{reply{552, "5.5.3", "Too many recipients"}, Unknown, RTemporaryFailure},
	}
	for _, c := range cases {
		v, reason := replyVerdict(c.r)
		if v != c.verdict || reason != c.reason {
			t.Errorf("%d %s %q: %s/%s (bounce says %q), want %s/%s", c.r.Code, c.r.Enhanced, c.r.Text, v, reason, classify(c.r).Reason, c.verdict, c.reason)
		}
	}
}
