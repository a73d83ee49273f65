package unsub

import (
	"bytes"
	"net/mail"
	"path/filepath"
	"strings"
	"testing"
)

func newT(t testing.TB, secret string) *Tokens {
	tk, err := New([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestTokens(t *testing.T) {
	a := newT(t, "0123456789abcdef-secret-a")
	b := newT(t, "0123456789abcdef-secret-b")
	good := a.Make("marketing", "John@Example.com")
	tests := []struct {
		name, tok    string
		stream, rcpt string
		ok           bool
	}{
		{"valid", good, "marketing", "john@example.com", true},
		{"other secret", b.Make("marketing", "john@example.com"), "", "", false},
		{"payload swapped", a.Make("marketing", "eve@example.com")[:strings.Index(a.Make("marketing", "eve@example.com"), ".")] + good[strings.Index(good, "."):], "", "", false},
		{"mac truncated", good[:len(good)-2], "", "", false},
		{"no dot", strings.ReplaceAll(good, ".", ""), "", "", false},
		{"empty", "", "", "", false},
		{"padding", good + "=", "", "", false},
		{"huge", strings.Repeat("A", 5000) + ".AAAA", "", "", false},
	}
	for _, tc := range tests {
		s, r, err := a.Parse(tc.tok)
		if (err == nil) != tc.ok || s != tc.stream || r != tc.rcpt {
			t.Errorf("%s: Parse = %q %q %v", tc.name, s, r, err)
		}
	}
	if _, err := New([]byte("short")); err == nil {
		t.Error("short secret accepted")
	}
}

func TestHeaders(t *testing.T) {
	tk := newT(t, "0123456789abcdef-secret")
	tests := []struct {
		base, dom string
		wantURL   bool
		wantMail  bool
	}{
		{"https://mail.example.com/", "bounce.example.com", true, true},
		{"https://mail.example.com", "", true, false},
		{"", "bounce.example.com", false, true},
		{"", "", false, false},
	}
	for _, tc := range tests {
		h := tk.Headers(tc.base, tc.dom, "marketing", "a@example.org")
		if !tc.wantURL && !tc.wantMail {
			if h != nil {
				t.Errorf("headers without any target: %q", h)
			}
			continue
		}
		m, err := mail.ReadMessage(bytes.NewReader(append(h, "\r\nbody"...)))
		if err != nil {
			t.Fatalf("headers do not parse: %v\n%s", err, h)
		}
		lu := m.Header.Get("List-Unsubscribe")
		tok := tk.Make("marketing", "a@example.org")
		if got := strings.Contains(lu, "<https://mail.example.com/unsubscribe/"+tok+">"); got != tc.wantURL {
			t.Errorf("%+v: https in %q = %v", tc, lu, got)
		}
		if got := strings.Contains(lu, "<mailto:unsubscribe+"+tok+"@bounce.example.com>"); got != tc.wantMail {
			t.Errorf("%+v: mailto in %q = %v", tc, lu, got)
		}
		if got := m.Header.Get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"; got != tc.wantURL {
			t.Errorf("%+v: List-Unsubscribe-Post present = %v", tc, got)
		}
		if tc.wantMail {
			addr := "unsubscribe+" + tok + "@bounce.example.com"
			got, ok := MailtoToken(addr)
			if !ok || got != tok {
				t.Errorf("MailtoToken(%s) = %q %v", addr, got, ok)
			}
		}
	}
}

func TestSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "unsubscribe.key")
	s1, err := LoadOrCreateSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := LoadOrCreateSecret(p)
	if err != nil || !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Fatalf("second load: %x vs %x, %v", s1, s2, err)
	}
}

// FuzzParse: no input panics; anything Parse accepts round-trips through
// Make to the same token.
func FuzzParse(f *testing.F) {
	tk := newT(f, "0123456789abcdef-fuzz")
	f.Add(tk.Make("marketing", "a@example.com"))
	f.Add("bWFya2V0aW5nAGFAZXhhbXBsZS5jb20.AAAAAAAAAAAAAAAA")
	f.Add(".")
	f.Add("a.b.c")
	f.Add("\xff\xfe.\x00")
	f.Fuzz(func(t *testing.T, tok string) {
		s, r, err := tk.Parse(tok)
		if err != nil {
			return
		}
		if again := tk.Make(s, r); again != tok {
			t.Fatalf("accepted %q (%q, %q) but Make gives %q", tok, s, r, again)
		}
	})
}
