package bounce

import (
	"os"
	"path/filepath"
	"testing"
)

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
