package bounce

import (
	"strings"
	"testing"
)

// shapeMessages are hand-written reports in the layouts that needed their
// own handling (sendmail v5 transcripts, PowerMTA categories, Status
// comments, ...). They also seed FuzzParse.
var shapeMessages = []struct {
	name string
	raw  string
	// want maps each recipient to the reason it must get.
	want map[string]string
}{
	{
		name: "sendmail v5: one result line per recipient, session reply before it",
		raw: "From: MAILER-DAEMON@mx.example.org\nTo: app@example.org\nSubject: Returned mail: User unknown\n\n" +
			"   ----- Transcript of session follows -----\n" +
			"While talking to relay.example.net:\n" +
			">>> MAIL From:<app@example.org>\n" +
			"<<< 501 <app@example.org>... no access from mail server [192.0.2.55]\n" +
			"554 <ann@example.net>... Remote protocol error\n" +
			"550 example.com (smtp)... 550 Host unknown\n" +
			"554 <bob@example.com>... 550 Host unknown (Authoritative answer from name server)\n" +
			"While talking to mx.example.edu:\n" +
			">>> RCPT To:<cat@example.edu>\n" +
			"<<< 550 <cat@example.edu>... User unknown\n" +
			"550 <cat@example.edu>... User unknown\n\n" +
			"   ----- Unsent message follows -----\nFrom: app@example.org\nTo: ann@example.net\nSubject: hi\n\nhi\n",
		want: map[string]string{"ann@example.net": "blocked", "bob@example.com": "hostunknown", "cat@example.edu": "userunknown"},
	},
	{
		name: "Status comment is the only text",
		raw: "From: MAILER-DAEMON@mx.example.org\nTo: app@example.org\nSubject: Delivery report\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nThe following addresses had delivery problems.\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n" +
			"Final-Recipient: rfc822;dee@example.net\nAction: delayed\nStatus: 4.0.0 (example.net: host name lookup failure)\n\n" +
			"--b--\n",
		want: map[string]string{"dee@example.net": "networkerror"},
	},
	{
		name: "PowerMTA bounce category decides",
		raw: "From: postmaster@example.org\nTo: app@example.org\nSubject: Delivery report\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nHello, this is the mail server on example.org.\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns;example.org\n\n" +
			"Final-Recipient: rfc822;eve@example.com\nAction: failed\nStatus: 5.0.0 (undefined status)\n" +
			"Diagnostic-Code: smtp;554 delivery error: dd This user doesn't have an example.com account\n" +
			"X-PowerMTA-BounceCategory: bad-mailbox\n\n--b--\n",
		want: map[string]string{"eve@example.com": "userunknown"},
	},
	{
		name: "transcript: the failure, not the 250s before it",
		raw: "From: MAILER-DAEMON@mx.example.org\nTo: app@example.org\nSubject: Undelivered Mail\n\n" +
			"Transcript of session follows.\n\n" +
			" In:  RCPT TO:<fay@example.net>\n Out: 250 2.1.5 Ok\n In:  DATA\n" +
			" Out: 354 End data with <CR><LF>.<CR><LF>\n Out: 451 4.3.0 Error: queue file write error\n",
		want: map[string]string{"fay@example.net": "systemerror"},
	},
	{
		name: "delivery-status part without recipients: the address alone says nothing",
		raw: "From: MAILER-DAEMON@mx.example.org\nTo: app@example.org\nSubject: Delivery Status Notification\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nDelivery to the following recipients failed permanently:\n\n   * gus@example.or.jp\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n--b--\n",
		want: map[string]string{"gus@example.or.jp": "undefined"},
	},
	{
		name: "explanation in the paragraph before the recipient line",
		raw: "From: Postmaster@mx.example.jp\nTo: app@example.org\nSubject: Mail System Error - Returned Mail\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nThe user(s) account is disabled.\n\n\n" +
			"<hal@example.jp>: 550 user unknown (in reply to RCPT TO command)\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.jp\n\n" +
			"Final-Recipient: rfc822; hal@example.jp\nAction: failed\nStatus: 5.0.0\n\n--b--\n",
		want: map[string]string{"hal@example.jp": "suspend"},
	},
	{
		name: "Apple Mail unsubscribe is an opt-out, not a vacation notice",
		raw: "From: ivy@icloud.example\nTo: opt-out-1@example.org\nSubject: unsubscribe\nAuto-Submitted: auto-replied\n" +
			"X-Apple-Unsubscribe: true\n\nApple Mail sent this email to unsubscribe from the message.\n",
		want: map[string]string{"ivy@icloud.example": "feedback"},
	},
}

// TestParseShapes parses the hand-written reports of shapeMessages.
func TestParseShapes(t *testing.T) {
	for _, tt := range shapeMessages {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, b := range rep.Bounces {
				got[strings.ToLower(b.Recipient)] = b.Reason
			}
			for rcpt, reason := range tt.want {
				if got[rcpt] != reason {
					t.Errorf("%s: reason %q, want %q (all: %v)", rcpt, got[rcpt], reason, got)
				}
			}
		})
	}
}
