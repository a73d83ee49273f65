package bounce

import (
	"os"
	"path/filepath"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		code     int
		enhanced string
		text     string
		reason   string
		status   string
		hard     bool
	}{
		{550, "5.1.1", "5.1.1 <a@b.example>: Recipient address rejected: User unknown in local recipient table", "userunknown", "5.1.1", true},
		{550, "", "550 No such user here", "userunknown", "5.0.911", true},
		{552, "5.2.2", "5.2.2 Mailbox full", "mailboxfull", "5.2.2", false},
		{452, "4.2.2", "4.2.2 The email account that you tried to reach is over quota", "mailboxfull", "4.2.2", false},
		{554, "5.7.1", "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "blocked", "5.7.1", false},
		{550, "5.7.1", "5.7.1 Message rejected as spam by Content Filtering.", "spamdetected", "5.7.1", false},
		{550, "5.7.26", "5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy", "authfailure", "5.7.26", false},
		{421, "4.7.0", "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "badreputation", "4.7.0", false},
		{550, "5.1.2", "5.1.2 Host unknown: domain does not exist", "hostunknown", "5.1.2", true},
		{552, "5.3.4", "5.3.4 Message size exceeds fixed maximum message size", "mesgtoobig", "5.3.4", false},
		{421, "", "Too many concurrent SMTP connections; please try again later", "toomanyconn", "4.0.945", false},
		{550, "5.7.25", "5.7.25 The IP address sending this message does not have a PTR record setup", "requireptr", "5.7.25", false},
		{554, "5.7.1", "5.7.1 <a@b.example>: Relay access denied", "norelaying", "5.7.1", false},
		{550, "5.2.1", "5.2.1 The email account that you tried to reach is disabled", "suspend", "5.2.1", false},
		{521, "", "521 example.com does not accept mail", "notaccept", "5.0.932", true},
		{556, "5.1.10", "5.1.10 Recipient address has null MX", "notaccept", "5.1.10", true},
		{250, "2.0.0", "2.0.0 Ok: queued", "delivered", "2.0.0", false},
		{452, "4.3.1", "", "systemfull", "4.3.1", false},
		{0, "", "", "undefined", "5.0.900", false},
		{550, "", "something nobody has seen before", "onhold", "5.0.901", false},
		{554, "5.6.0", "5.6.0 Message contains invalid header", "contenterror", "5.6.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			c := Classify(tt.code, tt.enhanced, tt.text)
			if c.Reason != tt.reason || c.Status != tt.status || c.Hard != tt.hard {
				t.Fatalf("Classify(%d,%q,%q) = %+v; want reason=%s status=%s hard=%v",
					tt.code, tt.enhanced, tt.text, c, tt.reason, tt.status, tt.hard)
			}
		})
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.toml")
	if err := os.WriteFile(good, []byte(`
[status]
"5.7.1" = "policyviolation"

[[reason]]
name = "blocked"
phrases = ["acme-gateway says no"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRules(good)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Classify(550, "5.1.1", "5.1.1 acme-gateway says no to you"); c.Reason != "blocked" {
		t.Errorf("operator phrase: %+v", c)
	}
	if c := r.Classify(550, "5.7.1", "5.7.1 denied"); c.Reason != "policyviolation" {
		t.Errorf("operator status: %+v", c)
	}
	if c := r.Classify(550, "5.1.1", "5.1.1 user unknown"); c.Reason != "userunknown" {
		t.Errorf("defaults kept: %+v", c)
	}

	bad := []struct{ name, body string }{
		{"unknown reason", "[[reason]]\nname = \"nosuch\"\nphrases = [\"x\"]\n"},
		{"unknown key", "colour = \"blue\"\n"},
		{"bad regex", "[[reason]]\nname = \"blocked\"\npatterns = [\"(\"]\n"},
		{"bad status reason", "[status]\n\"5.1.1\" = \"nosuch\"\n"},
		{"not toml", "[[[\n"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			p := filepath.Join(dir, b.name+".toml")
			if err := os.WriteFile(p, []byte(b.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadRules(p); err == nil {
				t.Fatal("want error")
			}
		})
	}
	if _, err := LoadRules(filepath.Join(dir, "missing.toml")); err == nil {
		t.Fatal("missing file: want error")
	}
}

func BenchmarkClassify(b *testing.B) {
	replies := []struct {
		code     int
		enhanced string
		text     string
	}{
		{550, "5.1.1", "5.1.1 <someone@example.com>: Recipient address rejected: User unknown in virtual mailbox table"},
		{421, "4.7.0", "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"},
		{250, "2.0.0", "2.0.0 Ok: queued as 4ABCD"},
		{451, "", "Temporary local problem - please try later"},
	}
	r := DefaultRules()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x := replies[i%len(replies)]
		r.Classify(x.code, x.enhanced, x.text)
	}
}
