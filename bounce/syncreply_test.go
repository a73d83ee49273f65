package bounce

import "testing"

// TestClassifySyncReplies classifies hand-written replies as our own SMTP
// client sees them (code, enhanced status, text) for the main reasons, and
// checks sisimai's hard/soft split.
func TestClassifySyncReplies(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		enhanced string
		text     string
		reason   string
		hard     bool
	}{
		{"rcpt unknown", 550, "5.1.1", "5.1.1 <bob@dest.example>: Recipient address rejected: User unknown in virtual mailbox table", "userunknown", true},
		{"no status unknown", 550, "", "Requested action not taken: mailbox unavailable", "userunknown", true},
		{"host unknown", 550, "5.1.2", "5.1.2 Host or domain name not found", "hostunknown", true},
		{"null mx", 556, "5.1.10", "5.1.10 Recipient address has null MX", "notaccept", true},
		{"temporary notaccept", 450, "4.3.2", "4.3.2 Service currently unavailable, not accepting messages", "notaccept", false},
		{"moved", 551, "5.1.6", "5.1.6 User has moved; please try <bob@new.example>", "hasmoved", true},
		{"mailbox full", 552, "5.2.2", "5.2.2 <bob@dest.example>: mailbox full", "mailboxfull", false},
		{"quota 4xx", 452, "4.2.2", "4.2.2 The email account that you tried to reach is over quota", "mailboxfull", false},
		{"disabled", 550, "5.2.1", "5.2.1 The email account that you tried to reach is disabled", "suspend", false},
		{"relay", 554, "5.7.1", "5.7.1 <bob@dest.example>: Relay access denied", "norelaying", false},
		{"dnsbl", 554, "5.7.1", "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "blocked", false},
		{"spam", 550, "5.7.1", "5.7.1 Message rejected as spam by Content Filtering", "spamdetected", false},
		{"dmarc", 550, "5.7.26", "5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy", "authfailure", false},
		{"ptr", 550, "5.7.25", "5.7.25 The IP address sending this message does not have a PTR record setup", "requireptr", false},
		{"size", 552, "5.3.4", "5.3.4 Message size exceeds fixed maximum message size", "mesgtoobig", false},
		{"sender rejected", 553, "5.1.8", "5.1.8 <app@example.org>: Sender address rejected: Domain not found", "rejected", false},
		{"too many connections", 421, "4.7.0", "4.7.0 Too many concurrent SMTP connections; please try again later", "toomanyconn", false},
		{"rate", 450, "4.2.1", "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered", "speeding", false},
		{"folded multi-line", 550, "5.7.1", "550-5.7.1 This message does not have authentication information or fails to\n550-5.7.1 pass authentication checks", "authfailure", false},
		{"reputation", 421, "4.7.0", "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "badreputation", false},
		{"virus", 554, "5.7.1", "5.7.1 Virus detected: Eicar-Test-Signature", "virusdetected", false},
		{"system full", 452, "4.3.1", "4.3.1 Insufficient system storage", "systemfull", false},
		{"delivered", 250, "2.0.0", "2.0.0 Ok: queued as 4ABCD", "delivered", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Classify(tt.code, tt.enhanced, tt.text)
			if c.Reason != tt.reason || c.Hard != tt.hard {
				t.Fatalf("Classify(%d, %q, %q) = %+v; want reason %s hard %v", tt.code, tt.enhanced, tt.text, c, tt.reason, tt.hard)
			}
		})
	}
}
