package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestEightBitClients submits UTF-8 mail the way real clients do, without
// BODY=8BITMIME (Python's smtplib.send_message, swaks --data), to the real
// daemon. Each message goes to an MX that offers 8BITMIME, which gets the
// 8-bit bytes with BODY=8BITMIME, and to a strict 7-bit MX (no 8BITMIME,
// refuses 8-bit octets), which gets quoted-printable that decodes to the
// same text.
func TestEightBitClients(t *testing.T) {
	const text = "Grüße aus Köln – 10 €"
	swaks, _ := exec.LookPath("swaks")
	clients := []struct {
		name string
		run  func(e *env, id string) ([]byte, error)
	}{
		{"python smtplib.send_message", func(e *env, id string) ([]byte, error) {
			host, port, _ := strings.Cut(e.smtp, ":")
			script := fmt.Sprintf(`import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "a@src.test"
m["To"] = "r@eight.test, r@seven.test"
m["Subject"] = "Grüße %s"
m.set_content(%q + "\n")
with smtplib.SMTP(%q, %s) as s:
    s.send_message(m)
`, id, text, host, port)
			return exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
		}},
		{"swaks --data", func(e *env, id string) ([]byte, error) {
			if swaks == "" {
				if os.Getenv("CI") == "true" {
					t.Fatal("swaks not installed: .ci/run must install it")
				}
				t.Skip("swaks not installed: apt-get install -y swaks")
			}
			cmd := exec.Command(swaks, "--server", e.smtp, "--from", "a@src.test", "--to", "r@eight.test,r@seven.test",
				"--data", "-", "--hide-all")
			cmd.Stdin = strings.NewReader("From: a@src.test\r\nTo: r@eight.test\r\nSubject: swaks " + id + "\r\n\r\n" + text + "\r\n.\r\n")
			return cmd.CombinedOutput()
		}},
	}
	e := newEnv(t)
	eight, seven := eightAndSevenBitMX(t, e)
	e.start()
	for i, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("c%d", i)
			if out, err := c.run(e, id); err != nil {
				t.Fatalf("client: %v\n%s", err, out)
			}
			find := func(mx *testnet.MX) (testnet.Mail, bool) {
				for _, m := range mx.Mails() {
					if bytes.Contains(m.Data, []byte(id)) {
						return m, true
					}
				}
				return testnet.Mail{}, false
			}
			var m8, m7 testnet.Mail
			if !testnet.Wait(15*time.Second, func() bool {
				var ok8, ok7 bool
				m8, ok8 = find(eight)
				m7, ok7 = find(seven)
				return ok8 && ok7
			}) {
				t.Fatalf("not delivered to both MX hosts (8BITMIME host %d mails, 7-bit host %d mails)", eight.Count(), seven.Count())
			}
			if m8.Body != "8BITMIME" || !bytes.Contains(m8.Data, []byte(text)) {
				t.Errorf("8BITMIME host: BODY=%q, raw UTF-8 text present: %v\n%s", m8.Body, bytes.Contains(m8.Data, []byte(text)), m8.Data)
			}
			if m7.Body != "" || eightbit.Has8bit(m7.Data) {
				t.Errorf("7-bit host: BODY=%q, 8-bit octets: %v", m7.Body, eightbit.Has8bit(m7.Data))
			}
			if !bytes.Contains(m7.Data, []byte("Content-Transfer-Encoding: quoted-printable\r\n")) {
				t.Errorf("7-bit host got no quoted-printable:\n%s", m7.Data)
			}
			ent, err := message.Read(bytes.NewReader(m7.Data))
			if err != nil {
				t.Fatalf("7-bit message does not parse: %v\n%s", err, m7.Data)
			}
			dec, err := io.ReadAll(ent.Body)
			if err != nil || strings.TrimRight(string(dec), "\r\n") != text {
				t.Errorf("7-bit body decodes to %q (%v), want %q", dec, err, text)
			}
		})
	}
}

// eightAndSevenBitMX starts the MX of eight.test (offers 8BITMIME) and of
// seven.test (a strict 7-bit host).
func eightAndSevenBitMX(t *testing.T, e *env) (eight, seven *testnet.MX) {
	t.Helper()
	eight = e.mx(2, "eight.test", testnet.MXScript{})
	seven, err := testnet.StartMX(testnet.MXOptions{Addr: fmt.Sprintf("127.0.0.3:%d", e.mxPort), Domain: "mx3.seven.test", No8BitMIME: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seven.Close() })
	e.dns.Add("seven.test. 60 IN MX 10 mx3.seven.test.", "mx3.seven.test. 60 IN A 127.0.0.3")
	return eight, seven
}

// TestEightBitSigned: a DKIM-signed 8-bit message is converted to 7-bit
// before it is signed, so both next hops, with and without 8BITMIME, get
// the same 7-bit bytes and the signature verifies at both (go-msgauth and
// python3-dkim).
func TestEightBitSigned(t *testing.T) {
	pyv := testnet.PythonDKIM(t)
	e := newEnv(t)
	eight, seven := eightAndSevenBitMX(t, e)
	var kg struct {
		Record string `json:"record"`
	}
	out, err := exec.Command(filepath.Join(binDir, "petrelctl"), "-json", "dkim", "keygen", "signed.test", "s1", "-algo", "ed25519", "-data-dir", e.dataDir).Output()
	if err != nil || json.Unmarshal(out, &kg) != nil {
		t.Fatalf("dkim keygen: %v %s", err, out)
	}
	e.dns.Add("s1._domainkey.signed.test. 60 IN TXT " + strings.Join(regexp.MustCompile(`"([^"]*)"`).FindAllString(kg.Record, -1), " "))
	e.start()

	const text = "Grüße aus Köln – 10 €\r\n"
	msg := "From: Alice <alice@signed.test>\r\nTo: r@eight.test, r@seven.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
	if err := e.sendSMTP("alice@signed.test", []string{"r@eight.test", "r@seven.test"}, msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "delivery to both hosts", func() bool { return eight.Count() == 1 && seven.Count() == 1 })
	m8, m7 := eight.Mails()[0], seven.Mails()[0]
	if m8.Body != "" || eightbit.Has8bit(m8.Data) || !bytes.Contains(m8.Data, []byte("Content-Transfer-Encoding: quoted-printable\r\n")) {
		t.Errorf("8BITMIME host: BODY=%q, want the signed 7-bit form:\n%s", m8.Body, m8.Data)
	}
	if !bytes.Equal(m8.Data[bytes.Index(m8.Data, []byte("DKIM-Signature:")):], m7.Data[bytes.Index(m7.Data, []byte("DKIM-Signature:")):]) {
		t.Errorf("the two hosts got different signed messages:\n%s\n---\n%s", m8.Data, m7.Data)
	}
	for name, m := range map[string][]byte{"8BITMIME host": m8.Data, "7-bit host": m7.Data} {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m), &dkim.VerifyOptions{LookupTXT: lookupTXT(e.dns.Addr)})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Errorf("%s: go-msgauth: %v %+v", name, err, vs)
		}
		if got := pyv(t, e.dns.Addr, [][]byte{m})[0]; got != "ok" {
			t.Errorf("%s: python3-dkim says %q", name, got)
		}
		ent, err := message.Read(bytes.NewReader(m))
		if err != nil {
			t.Fatal(err)
		}
		if dec, _ := io.ReadAll(ent.Body); string(dec) != text {
			t.Errorf("%s: decodes to %q, want %q", name, dec, text)
		}
	}
}
