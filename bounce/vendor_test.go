package bounce

import (
	"fmt"
	"strings"
	"testing"
)

// dsnFor is a minimal RFC 3464 report for one recipient.
func dsnFor(rcpt, status, diag string) []byte {
	return fmt.Appendf(nil, "From: MAILER-DAEMON@mx.example\nTo: app@example.org\nSubject: Undelivered\nMIME-Version: 1.0\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nDelivery failed.\n\n"+
		"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; %s\nAction: failed\n"+
		"Status: %s\nDiagnostic-Code: smtp; %s\n\n--B--\n", rcpt, status, diag)
}

// TestVendorReplies classifies replies worded as providers document them
// (not taken from the shared corpus): a specific status decides over a
// generic phrase, and NetEase / QQ / Gmail codes map to their reasons.
func TestVendorReplies(t *testing.T) {
	cases := []struct {
		rcpt, status, diag, want string
	}{
		// RFC 3463 5.1.1 with a phrase that elsewhere means the sender.
		{"a@b.example", "5.1.1", "550 5.1.1 <a@b.example>... Address rejected", "userunknown"},
		// Gmail: 4.7.28 rate limit of unsolicited mail.
		{"a@gmail.com", "4.7.28", "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address", "speeding"},
		// NetEase documented codes.
		{"a@163.com", "5.0.0", "550 MI:SPF Mail rejected by SPF policy", "authfailure"},
		{"a@126.com", "5.0.0", "550 MI:DMA Message rejected by DMARC policy", "authfailure"},
		{"a@163.com", "4.0.0", "451 RP:QRC Recipient quota exceeded, frequency limit", "speeding"},
		{"a@yeah.net", "4.0.0", "451 MI:SFQ sender frequency limited", "speeding"},
		{"a@163.com", "5.0.0", "554 DT:SPM Mail content denied", "spamdetected"},
		{"a@163.com", "5.0.0", "550 User not found: a@163.com", "userunknown"},
		// QQ Mail.
		{"a@qq.com", "5.0.0", "550 Mailbox not found or access denied", "userunknown"},
		{"a@qq.com", "4.0.0", "451 Ip frequency limited, please try again later", "speeding"},
		{"a@foxmail.com", "5.0.0", "550 Message rejected: DMARC check failed", "authfailure"},
		// Telecom providers.
		{"a@139.com", "4.0.0", "451 Mail from your IP exceed the limit, frequency limited", "speeding"},
	}
	for _, c := range cases {
		rep, err := Parse(dsnFor(c.rcpt, c.status, c.diag))
		if err != nil || len(rep.Bounces) != 1 {
			t.Fatalf("%s: %v %v", c.diag, err, rep)
		}
		if got := rep.Bounces[0].Reason; got != c.want {
			t.Errorf("%s %s %q: %s, want %s", c.rcpt, c.status, c.diag, got, c.want)
		}
	}
}

// TestNoRecipientsFromReturnedHeaders: a text-only bounce that quotes the
// returned message's header without a marker line. Its Message-ID,
// References and From addresses are not bounced recipients.
func TestNoRecipientsFromReturnedHeaders(t *testing.T) {
	raw := "From: mailer-daemon@mx.example\nTo: app@example.org\nSubject: Undelivered Mail\n\n" +
		"Your message could not be delivered.\n\n" +
		"[Status: Error, Address: <user@dest.example>, ResponseCode 550, , No such user.]\n\n" +
		"Message-ID:<14a3e1f7f3c.110ef7.75305@mail.example.org>\nReferences: <prev.1@lists.example.net>\n" +
		"From: \"Sender\" <sender@example.net>\nReceived: from a by b for <relay@relay.example>\nTo: user@dest.example\n"
	rep, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range rep.Bounces {
		got = append(got, b.Recipient)
	}
	if len(got) != 1 || got[0] != "user@dest.example" {
		t.Errorf("recipients %v, want [user@dest.example]", got)
	}
}

// TestDelayNoticeStatusClass: a delay warning without DSN fields or
// status codes gets a 4.x pseudo-status, and a reply code the report
// labels ("ResponseCode 421,") is read.
func TestDelayNoticeStatusClass(t *testing.T) {
	cases := []struct {
		name, subject, body, status string
		code                        int
	}{
		{"warning only", "Delivery Status Notification (Delay)",
			"THIS IS A WARNING MESSAGE ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\nDelivery to the following recipient has been delayed:\n\n     user@dest.example\n\nMessage will be retried for 2 more day(s)\n\nThe recipient server did not accept our requests to connect.",
			"4.0.947", 0},
		{"labelled code", "Mail Delivery Status Notification",
			"[Status: Error, Address: <user@dest.example>, ResponseCode 421, , Host not reachable.]\nMessage will be retried for 4 more day(s)\n",
			"", 421},
		{"failure stays 5", "Delivery Status Notification (Failure)",
			"Delivery to the following recipient failed permanently:\n\n     user@dest.example\n\nThe recipient server did not accept our requests to connect.",
			"5.0.947", 0},
	}
	for _, c := range cases {
		raw := "From: mailer-daemon@mx.example\nTo: app@example.org\nSubject: " + c.subject + "\n\n" + c.body + "\n"
		rep, err := Parse([]byte(raw))
		if err != nil || len(rep.Bounces) != 1 {
			t.Fatalf("%s: %v %+v", c.name, err, rep)
		}
		b := rep.Bounces[0]
		if c.status != "" && b.Status != c.status {
			t.Errorf("%s: status %s (%s), want %s", c.name, b.Status, b.Reason, c.status)
		}
		if b.ReplyCode != c.code {
			t.Errorf("%s: reply code %d, want %d", c.name, b.ReplyCode, c.code)
		}
		if c.status != "" && c.status[0] == '4' && b.Hard {
			t.Errorf("%s: hard", c.name)
		}
	}
}

// TestDiagnosticNotFromReturnedMessage: the returned message quoted
// without a marker line (a blank line, then its header fields) is not
// part of the diagnostic, and in a multi-recipient report each recipient
// keeps its own text.
func TestDiagnosticNotFromReturnedMessage(t *testing.T) {
	raw := "From: MAILER-DAEMON@mx.example\nTo: app@example.org\nSubject: failure notice\n\n" +
		"Sorry, we were unable to deliver your message to a@x.example: the remote server said: 550 5.7.1 Message rejected as spam\n\n" +
		"Return-Path: <app@example.org>\nTo: a@x.example\nSubject: mailbox full\n\nyour mailbox is full and the user is unknown\n"
	rep, err := Parse([]byte(raw))
	if err != nil || len(rep.Bounces) != 1 {
		t.Fatalf("%v %+v", err, rep)
	}
	if b := rep.Bounces[0]; b.Reason == "mailboxfull" || strings.Contains(b.Diagnostic, "your mailbox is full") {
		t.Errorf("diagnostic read from the returned message: %s %q", b.Reason, b.Diagnostic)
	}
	if rep.OriginalHeaders.Get("Subject") != "mailbox full" {
		t.Errorf("returned headers not recognised: %v", rep.OriginalHeaders)
	}
	multi := "From: MAILER-DAEMON@mx.example\nTo: app@example.org\nSubject: failure notice\n\n" +
		"Sorry, we were unable to deliver your message to the following addresses.\n\n" +
		"<a@x.example>:\n550 5.1.1 user unknown\n\n<b@y.example>:\n552 5.2.2 mailbox is full\n\n<c@z.example>:\n452 4.3.1 insufficient system storage\n"
	rep, err = Parse([]byte(multi))
	if err != nil || len(rep.Bounces) != 3 {
		t.Fatalf("%v %+v", err, rep)
	}
	for i, want := range []string{"userunknown", "mailboxfull", "systemfull"} {
		if b := rep.Bounces[i]; b.Reason != want {
			t.Errorf("%s: %s (%q), want %s", b.Recipient, b.Reason, b.Diagnostic, want)
		}
	}
}

// TestVendorSyncReplies: synchronous replies in documented vendor
// wording that names no specific status code.
func TestVendorSyncReplies(t *testing.T) {
	cases := []struct{ text, want string }{
		{"550 Recipient not listed in public directory", "userunknown"},
		{"550 user@b.example is not listed in Domino Directory", "userunknown"},
		{"550 No valid recipients", "userunknown"},
		{"550 5.7.1 Unauthenticated email is not accepted from this domain (DMARC)", "authfailure"},
		{"550 5.7.1 Message rejected per DMARC policy", "authfailure"},
		{"550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification", "authfailure"},
		{"554 5.2.0 STOREDRV.Deliver.Exception:QuotaExceededException", "mailboxfull"},
		{"550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP", "blocked"},
	}
	for _, c := range cases {
		if got := Classify(0, "", c.text); got.Reason != c.want {
			t.Errorf("%q: %s, want %s", c.text, got.Reason, c.want)
		}
	}
}

// TestRecipientTextNotFromLongerAddress: one recipient's address inside
// another's ("a@x.example" in "ba@x.example") does not take the other's
// diagnostic.
func TestRecipientTextNotFromLongerAddress(t *testing.T) {
	raw := "From: MAILER-DAEMON@mx.example\nTo: app@example.org\nSubject: failure notice\n\n" +
		"Sorry, we were unable to deliver your message to the following addresses.\n\n" +
		"<ba@x.example>:\n552 5.2.2 mailbox is full\n\n<a@x.example>:\n550 5.1.1 user unknown\n"
	rep, err := Parse([]byte(raw))
	if err != nil || len(rep.Bounces) != 2 {
		t.Fatalf("%v %+v", err, rep)
	}
	for _, b := range rep.Bounces {
		want := map[string]string{"ba@x.example": "mailboxfull", "a@x.example": "userunknown"}[b.Recipient]
		if b.Reason != want {
			t.Errorf("%s: %s (%q), want %s", b.Recipient, b.Reason, b.Diagnostic, want)
		}
	}
}
