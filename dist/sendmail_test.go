package dist

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestSendmail submits with petrel-sendmail the way cron, PHP mail() and
// scripts call /usr/sbin/sendmail, to a real petreld, over SMTP and HTTP,
// and checks the envelope and message at a real loopback MX host.
func TestSendmail(t *testing.T) {
	dm := startDaemon(t, "")
	mx := dm.mx(t, 1, "dest.test")
	tests := []struct {
		name     string
		args     []string
		env      []string
		stdin    string
		code     int
		from     string
		rcpts    []string
		has      []string // in the delivered message
		hasNot   []string
		errHas   string
		newMails int
	}{
		{
			name:  "cron style -t -i -f -F over SMTP",
			args:  []string{"-t", "-i", "-f", "cron@sender.test", "-F", "Cron Daemon"},
			stdin: "To: a@dest.test\nCc: B <b@dest.test>\nBcc: c@dest.test,\n d@dest.test\nSubject: nightly\n\nline one\n.\nline after the dot\n",
			from:  "cron@sender.test", rcpts: []string{"a@dest.test", "b@dest.test", "c@dest.test", "d@dest.test"},
			has:    []string{"From: \"Cron Daemon\" <cron@sender.test>\r\n", "Subject: nightly\r\n", "\r\n.\r\nline after the dot\r\n"},
			hasNot: []string{"Bcc", "d@dest.test"}, newMails: 1,
		},
		{
			name: "positional, lone dot ends the message, clustered -fSENDER -oi absent",
			args: []string{"-fapp@sender.test", "x@dest.test"}, stdin: "From: App <app@sender.test>\nSubject: dot\n\nbefore\n.\nnot sent\n",
			from: "app@sender.test", rcpts: []string{"x@dest.test"},
			has: []string{"From: App <app@sender.test>\r\n", "before\r\n"}, hasNot: []string{"not sent"}, newMails: 1,
		},
		{
			name: "PHP mail() style -t -i plus a positional recipient",
			args: []string{"-t", "-i", "-r", "www@sender.test", "extra@dest.test"}, stdin: "To: y@dest.test\nSubject: php\n\nhi\n",
			from: "www@sender.test", rcpts: []string{"extra@dest.test", "y@dest.test"}, has: []string{"From: <www@sender.test>\r\n"}, newMails: 1,
		},
		{
			name: "HTTP injection with the API key",
			args: []string{"--server", "http://" + dm.http, "-oi", "-f", "api@sender.test", "z@dest.test"},
			env:  []string{"PETREL_API_KEY=" + dm.key}, stdin: "Subject: over http\n\nbody\n.\nstill body\n",
			from: "api@sender.test", rcpts: []string{"z@dest.test"}, has: []string{"Subject: over http\r\n", "still body"}, newMails: 1,
		},
		{
			name: "HTTP to another host without a key: refused before sending",
			args: []string{"--server", "http://mail.example.net:8025", "-f", "a@sender.test", "z@dest.test"},
			env:  []string{"PETREL_API_KEY="}, stdin: "Subject: x\n\ny\n", code: 64, errHas: "no API key for http://mail.example.net:8025",
		},
		{
			name: "daemon unreachable: temporary failure",
			args: []string{"--server", "smtp://" + freeAddr(t), "-f", "a@sender.test", "z@dest.test"}, stdin: "Subject: x\n\ny\n",
			code: 75, errHas: "unreachable",
		},
		{
			name: "no recipients", args: []string{"-f", "a@sender.test"}, stdin: "Subject: x\n\ny\n", code: 64, errHas: "no recipients",
		},
		{
			name: "unknown option", args: []string{"-Z"}, stdin: "", code: 64, errHas: "unknown option -Z",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := mx.Count()
			cmd := exec.Command(filepath.Join(binDir, "petrel-sendmail"), tc.args...)
			cmd.Env = append(os.Environ(), append([]string{"PETREL_SENDMAIL=smtp://" + dm.smtp}, tc.env...)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stderr.String(), tc.errHas) {
				t.Fatalf("exit %d %q, want %d %q", code, stderr.String(), tc.code, tc.errHas)
			}
			if tc.newMails == 0 {
				time.Sleep(200 * time.Millisecond)
				if mx.Count() != before {
					t.Fatalf("a refused submission was delivered")
				}
				return
			}
			if !testnet.Wait(20*time.Second, func() bool { return mx.Count() >= before+tc.newMails }) {
				t.Fatalf("not delivered:\n%s", dm.log.String())
			}
			m := mx.Mails()[before]
			got := slices.Sorted(slices.Values(m.Rcpts))
			if m.From != tc.from || !slices.Equal(got, tc.rcpts) {
				t.Fatalf("envelope from=%s rcpts=%v, want %s %v", m.From, got, tc.from, tc.rcpts)
			}
			for _, h := range tc.has {
				if !bytes.Contains(m.Data, []byte(h)) {
					t.Errorf("message lacks %q:\n%s", h, m.Data)
				}
			}
			hdr, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
			for _, h := range tc.hasNot {
				if bytes.Contains(m.Data, []byte(h)) && (h != "d@dest.test" || bytes.Contains(hdr, []byte(h))) {
					t.Errorf("message contains %q:\n%s", h, m.Data)
				}
			}
		})
	}
}

// TestSendmailAuth: with relay for no network, petrel-sendmail submits
// as an [[smtp.users]] user given in the URL or the environment (AUTH
// PLAIN; petreld allows it without TLS on loopback), and without
// credentials or with a wrong password petreld refuses (exit 69).
func TestSendmailAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dm := startDaemonSMTP(t, "mynetworks = []\n\n[[smtp.users]]\nname = \"cron\"\npassword_hash = \""+string(hash)+"\"\n", "")
	mx := dm.mx(t, 1, "dest.test")
	tests := []struct {
		name   string
		server string
		env    []string
		code   int
	}{
		{"no credentials: relay refused", "smtp://" + dm.smtp, nil, 69},
		{"wrong password", "smtp://cron:nope@" + dm.smtp, nil, 69},
		{"credentials in the URL", "smtp://cron:s3cret@" + dm.smtp, nil, 0},
		{"credentials in the environment", "smtp://" + dm.smtp, []string{"PETREL_SENDMAIL_USER=cron", "PETREL_SENDMAIL_PASSWORD=s3cret"}, 0},
	}
	delivered := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "petrel-sendmail"), "--server", tc.server, "-f", "cron@sender.test", "a@dest.test")
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("Subject: " + tc.name + "\n\nbody\n")
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, out)
			}
			if code == 0 {
				delivered++
				if !testnet.Wait(20*time.Second, func() bool { return mx.Count() >= delivered }) {
					t.Fatalf("not delivered:\n%s", dm.log.String())
				}
				if m := mx.Mails()[delivered-1]; !bytes.Contains(m.Data, []byte("Subject: "+tc.name)) || m.From != "cron@sender.test" {
					t.Fatalf("delivered %s:\n%s", m.From, m.Data)
				}
			}
		})
	}
	if mx.Count() != 2 {
		t.Fatalf("%d messages delivered, want 2", mx.Count())
	}
}
