package verify

import (
	"os"
	"path/filepath"
	"testing"
)

func TestListsShipped(t *testing.T) {
	l, err := LoadLists(ListPaths{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"mailinator.com disposable", l.Disposable("mailinator.com"), true},
		{"subdomain of wildcard disposable 33mail.com", l.Disposable("foo.33mail.com"), true},
		{"gmail.com not disposable", l.Disposable("gmail.com"), false},
		{"gmail.com free", l.Free("gmail.com"), true},
		{"petrel.example not free", l.Free("petrel.example"), false},
		{"admin role", l.Role("admin"), true},
		{"Info+news role", l.Role("Info+news"), true},
		{"postmaster role", l.Role("postmaster"), true},
		{"john.doe not role", l.Role("john.doe"), false},
		// Ordinary mailboxes that a long role list (1,018 entries)
		// flagged: people are called user, nobody, mail, ...
		{"user not role", l.Role("user"), false},
		{"nobody not role", l.Role("nobody"), false},
		{"mail not role", l.Role("mail"), false},
		{"noreply role", l.Role("noreply"), true},
		{"sales role", l.Role("Sales"), true},
		{"abuse role (RFC 2142)", l.Role("abuse"), true},
	}
	if n := len(l.role); n > 100 {
		t.Errorf("role list has %d entries: keep it to real role mailboxes", n)
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %v", c.name, c.got)
		}
	}
}

func TestSuggest(t *testing.T) {
	l, err := LoadLists(ListPaths{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ in, want string }{
		{"gmial.com", "gmail.com"},
		{"gnail.com", "gmail.com"},
		{"gmail.con", "gmail.com"},
		{"hotmial.com", "hotmail.com"},
		{"hotmaill.com", "hotmail.com"},
		{"yaho.com", "yahoo.com"},
		{"yahooo.com", "yahoo.com"},
		{"outlok.com", "outlook.com"},
		{"iclod.com", "icloud.com"},
		{"gmail.com", ""},
		{"mail.com", ""},
		{"example.com", ""},
		{"petrel.example", ""},
		{"gmx.at", ""},
	}
	for _, c := range cases {
		if got := l.Suggest(c.in); got != c.want {
			t.Errorf("Suggest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestListsOperatorFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, err := LoadLists(ListPaths{
		Disposable: write("d", "# mine\nthrow.example\n"),
		Role:       write("r", "Boss\n"),
		Free:       write("f", "free.example # comment\n"),
		Providers:  write("p", "bigmail.example\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Disposable("throw.example") || l.Disposable("mailinator.com") || !l.Role("boss") || l.Role("admin") ||
		!l.Free("free.example") || l.Suggest("bigmial.example") != "bigmail.example" || l.Suggest("gmial.com") != "" {
		t.Fatal("operator lists not used in place of shipped ones")
	}
	if _, err := LoadLists(ListPaths{Role: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing list file accepted")
	}
}
