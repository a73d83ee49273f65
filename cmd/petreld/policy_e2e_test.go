package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"net/smtp"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// lookupTXT asks the test DNS server, for go-msgauth's verifier.
func lookupTXT(dnsAddr string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		in, err := dns.Exchange(m, dnsAddr)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range in.Answer {
			if t, ok := rr.(*dns.TXT); ok {
				out = append(out, strings.Join(t.Txt, ""))
			}
		}
		return out, nil
	}
}

// TestPolicyThroughDaemon runs policy inside the real daemon: a key made
// by `petrelctl dkim keygen` signs delivered mail (checked by go-msgauth
// and by python3-dkim against the record published in test DNS); marketing
// mail gets RFC 8058 one-click unsubscribe headers whose POST suppresses
// the recipient in that stream only; suppressed recipients are refused at
// SMTP RCPT and reported as suppressed by HTTP; `policy status` shows the
// shaping state and SIGHUP reloads shaping rules.
func TestPolicyThroughDaemon(t *testing.T) {
	pyv := testnet.PythonDKIM(t)
	e := newEnv(t)
	mx := e.mx(2, "dest.test", testnet.MXScript{})

	// Key generated offline into the data dir, record published in DNS.
	var kg struct {
		Record  string `json:"record"`
		KeyFile string `json:"key_file"`
	}
	out, err := exec.Command(filepath.Join(binDir, "petrelctl"), "-json", "dkim", "keygen", "sender.test", "s1", "-data-dir", e.dataDir).Output()
	if err != nil {
		t.Fatalf("dkim keygen: %v", err)
	}
	if err := json.Unmarshal(out, &kg); err != nil || kg.Record == "" {
		t.Fatalf("keygen output %q: %v", out, err)
	}
	txt := regexp.MustCompile(`"([^"]*)"`).FindAllString(kg.Record, -1)
	if len(txt) == 0 {
		t.Fatalf("record %q has no TXT strings", kg.Record)
	}
	e.dns.Add("s1._domainkey.sender.test. 60 IN TXT " + strings.Join(txt, " "))

	e.http = freeAddr(t)
	e.extra = fmt.Sprintf("\n[sending]\nunsubscribe_url = \"http://%s\"\nunsubscribe_domain = \"unsub.sender.test\"\n", e.http)
	e.start()

	tx := "From: Alice <alice@sender.test>\r\nTo: bob@dest.test\r\nSubject: receipt\r\n\r\nyour receipt\r\n"
	if err := e.sendSMTP("alice@sender.test", []string{"bob@dest.test"}, tx); err != nil {
		t.Fatal(err)
	}
	mk := "From: News <news@sender.test>\r\nTo: bob@dest.test\r\nSubject: offer\r\nX-Petrel-Stream: marketing\r\n\r\nbuy now\r\n"
	if err := e.sendSMTP("news@sender.test", []string{"bob@dest.test"}, mk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "two deliveries", func() bool { return mx.Count() >= 2 })

	var txMail, mkMail []byte
	for _, m := range mx.Mails() {
		if bytes.Contains(m.Data, []byte("Subject: offer")) {
			mkMail = m.Data
		} else {
			txMail = m.Data
		}
	}
	for name, m := range map[string][]byte{"transactional": txMail, "marketing": mkMail} {
		if m == nil {
			t.Fatalf("%s mail not delivered", name)
		}
		if !bytes.Contains(m, []byte("DKIM-Signature:")) {
			t.Fatalf("%s mail not signed:\n%s", name, m)
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m), &dkim.VerifyOptions{LookupTXT: lookupTXT(e.dns.Addr)})
		if err != nil || len(vs) == 0 || vs[0].Err != nil || vs[0].Domain != "sender.test" {
			t.Fatalf("%s: go-msgauth verify: %v %+v", name, err, vs)
		}
		if got := pyv(t, e.dns.Addr, [][]byte{m})[0]; got != "ok" {
			t.Fatalf("%s: python3-dkim says %q", name, got)
		}
	}
	if bytes.Contains(mkMail, []byte("X-Petrel-Stream")) {
		t.Error("X-Petrel-Stream header was not removed")
	}
	if header(t, txMail, "List-Unsubscribe") != "" {
		t.Error("transactional mail got List-Unsubscribe")
	}
	if header(t, mkMail, "List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Fatalf("marketing mail lacks RFC 8058 header:\n%s", mkMail)
	}
	lu := header(t, mkMail, "List-Unsubscribe")
	url := regexp.MustCompile(`<(http[^>]+)>`).FindStringSubmatch(lu)
	if url == nil {
		t.Fatalf("no HTTPS/HTTP unsubscribe URL in %q", lu)
	}
	// One-click: the POST a mailbox provider sends.
	resp, err := http.Post(url[1], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click POST: %d", resp.StatusCode)
	}
	list, err := e.ctl("suppression", "list", "-stream", "marketing")
	if err != nil || !strings.Contains(list, "bob@dest.test") {
		t.Fatalf("suppression list after one-click: %v\n%s", err, list)
	}
	// Marketing to bob is now refused at ingest; transactional still flows.
	var acc struct {
		Recipients []struct{ Address, Status string } `json:"recipients"`
	}
	code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "news@sender.test", "to": []string{"bob@dest.test", "carol@dest.test"},
		"stream": "marketing", "subject": "again", "text": "hi"}, &acc)
	if err != nil || code != 202 || len(acc.Recipients) != 2 || acc.Recipients[0].Status != "suppressed" || acc.Recipients[1].Status != "queued" {
		t.Fatalf("HTTP marketing after unsubscribe: %d %v %+v", code, err, acc)
	}
	if err := e.sendSMTP("alice@sender.test", []string{"bob@dest.test"}, tx); err != nil {
		t.Fatalf("transactional to bob refused after a marketing unsubscribe: %v", err)
	}
	waitFor(t, 15*time.Second, "carol and the second receipt", func() bool { return mx.Count() >= 4 })
	for _, m := range mx.Mails()[2:] {
		if bytes.Contains(m.Data, []byte("Subject: again")) && strings.Contains(strings.Join(m.Rcpts, ","), "bob@") {
			t.Fatalf("suppressed marketing recipient reached the MX: %v", m.Rcpts)
		}
	}

	// policy status shows the state in use; SIGHUP swaps in a new rule.
	st, err := e.ctl("policy", "status")
	if err != nil || !strings.Contains(st, "transactional") || !strings.Contains(st, "marketing") {
		t.Fatalf("policy status: %v\n%s", err, st)
	}
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("\n[shaping]\n[[shaping.rule]]\nname = \"desttest\"\ndomains = [\"dest.test\"]\nconnection_limit = 3\nmax_message_rate = \"77/s\"\n")...)
	if err := os.WriteFile(e.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "reload logged", func() bool { return strings.Contains(e.logBuf.String(), "shaping rules reloaded") })
	if err := e.sendSMTP("alice@sender.test", []string{"dave@dest.test"}, tx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "delivery after reload", func() bool { return mx.Count() >= 5 })
	var status struct {
		Limits []struct {
			Stream, Key    string
			MaxMessageRate string `json:"max_message_rate"`
			Limit          int    `json:"connection_limit"`
		} `json:"limits"`
	}
	if _, err := e.api("GET", "/api/v1/policy/status", nil, &status); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range status.Limits {
		if l.Key == "desttest" && l.Limit == 3 && l.MaxMessageRate == "77/s" {
			found = true
		}
	}
	if !found {
		t.Fatalf("reloaded rule not in effect: %+v", status.Limits)
	}
	// A broken file on SIGHUP keeps the running rules.
	if err := os.WriteFile(e.cfgPath, append(cfg, []byte("\nbogus_key = 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "reload refusal logged", func() bool { return strings.Contains(e.logBuf.String(), "config not reloaded") })
	if _, err := e.api("GET", "/healthz", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAtIngest: with [verify] at_ingest, recipients whose domain
// cannot receive mail are refused at SMTP RCPT (550 5.1.2) and reported
// "rejected" by HTTP; a DNS failure never refuses; `petrelctl verify`
// answers through the daemon.
func TestVerifyAtIngest(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "good.test", testnet.MXScript{})
	e.dns.Add("nullmx.test. 60 IN MX 0 .")
	e.dns.SetRcode("servfail.test", dns.RcodeServerFailure)
	e.extra = "\n[verify]\nat_ingest = true\nsmtp_probe = false\n"
	e.start()

	c, err := smtp.Dial(e.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("app@sender.test"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		rcpt string
		want string // "" = accepted
	}{
		{"bob@good.test", ""},
		{"bob@nxdomain.test", "550 5.1.2"},
		{"bob@nullmx.test", "550 5.1.2"},
		{"bob@servfail.test", ""}, // unknown is not undeliverable
	} {
		err := c.Rcpt(tt.rcpt)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("RCPT %s refused: %v", tt.rcpt, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want[4:])):
			t.Errorf("RCPT %s: got %v, want %s", tt.rcpt, err, tt.want)
		}
	}
	c.Quit()

	var acc struct {
		Recipients []struct{ Address, Status, Reason string } `json:"recipients"`
	}
	code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "app@sender.test",
		"to": []string{"carol@good.test", "carol@nullmx.test"}, "subject": "s", "text": "t"}, &acc)
	if err != nil || code != 202 || len(acc.Recipients) != 2 || acc.Recipients[0].Status != "queued" ||
		acc.Recipients[1].Status != "rejected" || acc.Recipients[1].Reason == "" {
		t.Fatalf("HTTP: %d %v %+v", code, err, acc)
	}
	var apiErr struct {
		Error struct{ Code string } `json:"error"`
	}
	code, _ = e.api("POST", "/api/v1/messages", map[string]any{"from": "app@sender.test",
		"to": []string{"dan@nxdomain.test"}, "subject": "s", "text": "t"}, &apiErr)
	if code != 422 || apiErr.Error.Code != "no_valid_recipient" {
		t.Fatalf("all rejected: %d %+v", code, apiErr)
	}
	waitFor(t, 15*time.Second, "carol delivered", func() bool { return mx.Count() >= 1 })

	out, err := e.ctl("-json", "verify", "erin@nullmx.test")
	if err != nil || !strings.Contains(out, `"undeliverable"`) {
		t.Fatalf("petrelctl verify: %v\n%s", err, out)
	}
}

// TestBounceRulesFile: an operator rules file ([bounce] rules_file) is
// used by the running daemon to classify a synchronous reply the shipped
// rules would call a hard user error: the operator says the provider's
// code ACME-ERR-42 is about our reputation, so the recipient is not
// suppressed. `petrelctl bounce classify -rules` gives the same answer.
func TestBounceRulesFile(t *testing.T) {
	e := newEnv(t)
	e.mx(2, "acme.test", testnet.MXScript{OnRcpt: func(string, int) error {
		return testnet.Reply(550, "5.1.1", "ACME-ERR-42 mailbox unavailable")
	}})
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, []byte("[[reason]]\nname = \"badreputation\"\nphrases = [\"acme-err-42\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.extra = fmt.Sprintf("\n[bounce]\nrules_file = %q\n", rules)
	e.start()

	var acc struct{ ID string }
	if code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "app@sender.test",
		"to": []string{"zed@acme.test"}, "subject": "s", "text": "t"}, &acc); err != nil || code != 202 {
		t.Fatalf("inject: %d %v", code, err)
	}
	waitFor(t, 15*time.Second, "bounced", func() bool {
		m := e.message(acc.ID)
		return len(m.Recipients) == 1 && m.Recipients[0].State == "bounced"
	})
	if r := e.message(acc.ID).Recipients[0]; r.Reason != "badreputation" {
		t.Fatalf("reason %q, want the rules file's badreputation (reply %q)", r.Reason, r.LastReply)
	}
	time.Sleep(500 * time.Millisecond) // give the rules loop its chance to (wrongly) suppress
	if list, err := e.ctl("suppression", "list"); err != nil || strings.Contains(list, "zed@acme.test") {
		t.Fatalf("recipient suppressed for a reply about us: %v\n%s", err, list)
	}
	out, err := e.ctl("bounce", "classify", "-rules", rules, "-reply", "550 5.1.1 ACME-ERR-42 mailbox unavailable")
	if err != nil || !strings.Contains(out, "badreputation") {
		t.Fatalf("petrelctl bounce classify -rules: %v\n%s", err, out)
	}
	out, err = e.ctl("bounce", "classify", "-reply", "550 5.1.1 ACME-ERR-42 mailbox unavailable")
	if err != nil || strings.Contains(out, "badreputation") {
		t.Fatalf("shipped rules alone should not say badreputation: %v\n%s", err, out)
	}
}
