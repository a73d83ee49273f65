package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const eximBounce = "From: Mail Delivery System <Mailer-Daemon@mx.example>\nTo: app@example.org\n" +
	"Subject: Mail delivery failed\n\nThe following address(es) failed:\n\n  user@dest.example\n" +
	"    SMTP error from remote mail server after RCPT TO:<user@dest.example>:\n    550 5.1.1 No such user\n"

const fullDSN = "From: MAILER-DAEMON@mx.example\nTo: app@example.org\nSubject: Undelivered Mail\nMIME-Version: 1.0\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nfailed\n\n" +
	"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; full@dest.example\n" +
	"Action: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\n\n--B--\n"

// TestBounceClassifyBatch runs batch mode over a directory and a file: one
// JSON line per message, lower-case field names, and an error line for a
// file that is not a message (the batch goes on).
func TestBounceClassifyBatch(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	os.WriteFile(filepath.Join(dir, "a.eml"), []byte(eximBounce), 0o600)
	os.WriteFile(filepath.Join(sub, "b.eml"), []byte(fullDSN), 0o600)
	os.WriteFile(filepath.Join(dir, "c.txt"), []byte("not a message"), 0o600)
	extra := filepath.Join(t.TempDir(), "d.eml")
	os.WriteFile(extra, []byte(fullDSN), 0o600)

	var so, se bytes.Buffer
	if code := run(context.Background(), []string{"bounce", "classify", dir, extra}, &so, &se); code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	type line struct {
		File    string `json:"file"`
		Error   string `json:"error"`
		Bounces []map[string]any
	}
	var lines []line
	sc := bufio.NewScanner(&so)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), so.String())
	}
	want := []struct{ file, rcpt, reason, status string }{
		{"a.eml", "user@dest.example", "userunknown", "5.1.1"},
		{"c.txt", "", "", ""},
		{"b.eml", "full@dest.example", "mailboxfull", "5.2.2"},
		{"d.eml", "full@dest.example", "mailboxfull", "5.2.2"},
	}
	for i, w := range want {
		l := lines[i]
		if filepath.Base(l.File) != w.file {
			t.Errorf("line %d: file %s, want %s", i, l.File, w.file)
		}
		if w.rcpt == "" {
			if l.Error == "" {
				t.Errorf("line %d: want an error for a non-message", i)
			}
			continue
		}
		if len(l.Bounces) != 1 {
			t.Fatalf("line %d: bounces %v", i, l.Bounces)
		}
		b := l.Bounces[0]
		if b["recipient"] != w.rcpt || b["reason"] != w.reason || b["status"] != w.status || b["hard"] != (w.reason == "userunknown") {
			t.Errorf("line %d: %v, want %+v", i, b, w)
		}
	}
	if strings.Contains(so.String(), `"Reason"`) {
		t.Error("upper-case JSON field names")
	}
	// A missing path is an error.
	so.Reset()
	if code := run(context.Background(), []string{"bounce", "classify", dir, filepath.Join(dir, "missing")}, &so, &se); code == 0 {
		t.Error("missing path: exit 0")
	}
	// -json -reply uses lower-case names too.
	so.Reset()
	if code := run(context.Background(), []string{"-json", "bounce", "classify", "-reply", "552 5.2.2 Mailbox full"}, &so, &se); code != 0 ||
		!strings.Contains(so.String(), `"reason": "mailboxfull"`) {
		t.Errorf("-json -reply: exit %d %s", code, so.String())
	}
}
