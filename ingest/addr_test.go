package ingest

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMailbox(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	tests := []struct {
		in     string
		utf8   bool
		ok     bool
		err    error
		domain string
	}{
		{"a@example.com", false, true, nil, "example.com"},
		{"first.last+tag@sub.Example.COM", false, true, nil, "sub.Example.COM"},
		{"!#$%&'*+-/=?^_`{|}~@x.y", false, true, nil, "x.y"},
		{`"john doe"@example.com`, false, true, nil, "example.com"},
		{`"a\"b\\c"@example.com`, false, true, nil, "example.com"},
		{`""@example.com`, false, true, nil, "example.com"},
		{"a@[192.0.2.1]", false, true, nil, "[192.0.2.1]"},
		{"a@[IPv6:2001:db8::1]", false, true, nil, "[IPv6:2001:db8::1]"},
		{"a@localhost", false, true, nil, "localhost"},
		{"a@1-2.x", false, true, nil, "1-2.x"},
		{long64 + "@example.com", false, true, nil, "example.com"},
		{"ünï@exämple.com", true, true, nil, "exämple.com"},
		{"ünï@example.com", false, false, ErrAddrUTF8, ""},
		{"a@exämple.com", false, false, ErrAddrUTF8, ""},
		{"", false, false, ErrAddrEmpty, ""},
		{long64 + "a@example.com", false, false, ErrAddrLength, ""},
		{"a@" + strings.Repeat("b", 260), false, false, ErrAddrLength, ""},
		{"a@" + strings.Repeat("b", 64) + ".com", false, false, ErrAddrSyntax, ""},
		{"a", false, false, ErrAddrSyntax, ""},
		{"@example.com", false, false, ErrAddrSyntax, ""},
		{"a@", false, false, ErrAddrSyntax, ""},
		{"a@@example.com", false, false, ErrAddrSyntax, ""},
		{".a@example.com", false, false, ErrAddrSyntax, ""},
		{"a.@example.com", false, false, ErrAddrSyntax, ""},
		{"a..b@example.com", false, false, ErrAddrSyntax, ""},
		{"a b@example.com", false, false, ErrAddrSyntax, ""},
		{"<a@example.com>", false, false, ErrAddrSyntax, ""},
		{"Alice <a@example.com>", false, false, ErrAddrSyntax, ""},
		{"a@example.com ", false, false, ErrAddrSyntax, ""},
		{"a@-example.com", false, false, ErrAddrSyntax, ""},
		{"a@example-.com", false, false, ErrAddrSyntax, ""},
		{"a@exa_mple.com", false, false, ErrAddrSyntax, ""},
		{"a@example..com", false, false, ErrAddrSyntax, ""},
		{"a@example.com.", false, false, ErrAddrSyntax, ""},
		{"a(comment)@example.com", false, false, ErrAddrSyntax, ""},
		{`"unterminated@example.com`, false, false, ErrAddrSyntax, ""},
		{"\"ctl\x01\"@example.com", false, false, ErrAddrSyntax, ""},
		{"a\r\nRCPT TO:<b@c.d>@example.com", false, false, ErrAddrSyntax, ""},
		{"a@[300.1.1.1]", false, false, ErrAddrLiteral, ""},
		{"a@[2001:db8::1]", false, false, ErrAddrLiteral, ""},
		{"a@[IPv6:192.0.2.1]", false, false, ErrAddrLiteral, ""},
		{"a@[IPv6:fe80::1%eth0]", false, false, ErrAddrLiteral, ""},
		{"a@[x:y]", false, false, ErrAddrLiteral, ""},
		{"a@[192.0.2.1", false, false, ErrAddrLiteral, ""},
		{"\xff@example.com", true, false, ErrAddrSyntax, ""},
	}
	for _, tt := range tests {
		m, err := ParseMailbox(tt.in, tt.utf8)
		if tt.ok {
			if err != nil {
				t.Errorf("ParseMailbox(%q) = %v", tt.in, err)
				continue
			}
			if m.String() != tt.in || m.Domain != tt.domain {
				t.Errorf("ParseMailbox(%q) = %+v", tt.in, m)
			}
			continue
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("ParseMailbox(%q) err %v, want %v", tt.in, err, tt.err)
		}
	}
}

// FuzzParseMailbox checks invariants of accepted addresses: they
// round-trip, respect the length limits, hold no controls or spaces
// outside quotes, and are ASCII unless UTF-8 was allowed.
func FuzzParseMailbox(f *testing.F) {
	for _, s := range []string{"a@example.com", `"a b"@x.y`, "a@[IPv6:::1]", "a@[1.2.3.4]", "ü@ä.de", "a..b@c", "@", `"\"@x`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, u bool) {
		m, err := ParseMailbox(s, u)
		if err != nil {
			return
		}
		if m.String() != s {
			t.Fatalf("round trip %q -> %q", s, m.String())
		}
		if len(s) > maxMailbox || len(m.Local) > maxLocalPart || m.Local == "" || m.Domain == "" {
			t.Fatalf("limits violated: %q", s)
		}
		if !utf8.ValidString(s) || (!u && m.UTF8) || (m.UTF8 != (strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0)) {
			t.Fatalf("utf8 flag wrong for %q (allowed %v): %+v", s, u, m)
		}
		if strings.ContainsAny(s, "\r\n\x00\t") || strings.ContainsAny(m.Domain, "<> ") {
			t.Fatalf("accepted control, space or angle bracket: %q", s)
		}
		if !strings.HasPrefix(m.Local, `"`) && strings.ContainsAny(m.Local, " \t\"(),:;\\[]") {
			t.Fatalf("special in unquoted local part: %q", s)
		}
		if _, err := ParseMailbox(m.String(), u); err != nil {
			t.Fatalf("reparse %q: %v", s, err)
		}
	})
}
