package bounce

import (
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/queue"
)

const arfSeed = "From: fbl@isp.example\r\nTo: fbl@example.org\r\nSubject: FW: hi\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n" +
	"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
	"--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: x/1\r\nVersion: 1\r\n" +
	"Original-Mail-From: <bounces+abc@bounce.example.org>\r\nOriginal-Rcpt-To: <user@isp.example>\r\n\r\n" +
	"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: app@example.org\r\nTo: user@isp.example\r\nMessage-ID: <m1@example.org>\r\n\r\nhi\r\n--b1--\r\n"

const eximSeed = "From: Mail Delivery System <Mailer-Daemon@mx.example>\r\nTo: app@example.org\r\n" +
	"Subject: Mail delivery failed\r\nAuto-Submitted: auto-replied\r\n\r\n" +
	"A message that you sent could not be delivered to one or more of its\r\nrecipients. The following address(es) failed:\r\n\r\n" +
	"  user@dest.example\r\n    SMTP error from remote mail server after RCPT TO:<user@dest.example>:\r\n" +
	"    550 5.1.1 No such user\r\n\r\n------ This is a copy of the message, including all the headers. ------\r\n\r\n" +
	"Return-path: <app@example.org>\r\nMessage-Id: <m2@example.org>\r\n\r\nbody\r\n"

const vacationSeed = "From: user@dest.example\r\nTo: app@example.org\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nI am out of the office.\r\n"

// FuzzParse feeds arbitrary bytes to Parse: it must never panic and must
// return either a report or an error.
func FuzzParse(f *testing.F) {
	dsn, err := BuildDSN(DSNParams{Hostname: "mta.example.org", MsgID: "M1",
		Envelope: queue.Envelope{From: "app@example.org"}, Original: []byte(originalMsg),
		Failed: failuresFor("a@dest.example"), Now: time.Unix(1700000000, 0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(dsn)
	f.Add([]byte(arfSeed))
	f.Add([]byte(eximSeed))
	f.Add([]byte(vacationSeed))
	f.Add([]byte("Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;a@b\r\nStatus: 5.1.1\r\n--x--\r\n"))
	f.Add([]byte(""))
	// Amazon SES notification JSON (decoded by parseSES).
	f.Add([]byte("From: no-reply@sns.example\r\nSubject: AWS Notification Message\r\n\r\n" +
		`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@dest.example",` +
		`"action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a.example"},` +
		`"mail":{"source":"app@example.org","messageId":"m1","headers":[{"name":"X-Petrel-ID","value":"00000000000000000000000000"}]}}`))
	f.Add([]byte("Subject: x\r\n\r\n" + `{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"b@dest.example"}],` +
		`"complaintFeedbackType":"abuse"},"mail":{"headers":[{"name":1}]}}`))
	for _, m := range shapeMessages {
		f.Add([]byte(m.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := Parse(raw)
		if err == nil && rep == nil {
			t.Fatal("nil report without error")
		}
		if rep != nil {
			for _, b := range rep.Bounces {
				if b.Reason == "" {
					t.Fatalf("empty reason in %+v", b)
				}
			}
		}
	})
}

// FuzzVERPDecode checks Decode never panics, and that anything it accepts
// re-encodes to the same identity.
func FuzzVERPDecode(f *testing.F) {
	v := VERP{Domain: "bounce.example.org", Secret: []byte("fuzz-secret")}
	f.Add(v.Encode("MSG1", 0))
	f.Add(v.Encode("01J9ZK3Q8M2", 17))
	f.Add("bounces+@bounce.example.org")
	f.Add("bounces+aaaa@other.example")
	f.Add("<>")
	f.Fuzz(func(t *testing.T, addr string) {
		id, idx, err := v.Decode(addr)
		if err != nil {
			return
		}
		if id2, idx2, err := v.Decode(v.Encode(id, idx)); err != nil || id2 != id || idx2 != idx {
			t.Fatalf("accepted %q as (%q,%d) but re-encode round trip gives (%q,%d,%v)", addr, id, idx, id2, idx2, err)
		}
	})
}

// FuzzClassify checks Classify never panics and always names a reason
// from the vocabulary.
func FuzzClassify(f *testing.F) {
	f.Add(550, "5.1.1", "5.1.1 user unknown")
	f.Add(421, "", "4.7.0 try again later")
	f.Add(0, "9.9.9", strings.Repeat("x", 300))
	f.Add(554, "5.7.0", "554 554 5.7.0 Header error (state 18).")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		c := Classify(code, enhanced, text)
		if !knownReasons[c.Reason] {
			t.Fatalf("reason %q not in vocabulary", c.Reason)
		}
	})
}
