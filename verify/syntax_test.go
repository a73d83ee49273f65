package verify

import (
	"errors"
	"net/mail"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		in         string
		norm       string // "" means invalid
		reason     string
		unicodeDom string
		quoted     bool
		utf8       bool
	}{
		{in: "john.doe@example.com", norm: "john.doe@example.com"},
		{in: "  John.Doe@EXAMPLE.com ", norm: "John.Doe@example.com"},
		{in: "user+tag@sub.example.co.uk", norm: "user+tag@sub.example.co.uk"},
		{in: "!#$%&'*+-/=?^_`{|}~@example.org", norm: "!#$%&'*+-/=?^_`{|}~@example.org"},
		{in: `"john doe"@example.com`, norm: `"john doe"@example.com`, quoted: true},
		{in: `"john"@example.com`, norm: `john@example.com`},
		{in: `"a\"b\\c"@example.com`, norm: `"a\"b\\c"@example.com`, quoted: true},
		{in: `"a@b"@example.com`, norm: `"a@b"@example.com`, quoted: true},
		{in: `"a..b"@example.com`, norm: `"a..b"@example.com`, quoted: true},
		{in: "用户@例子.测试", norm: "用户@xn--fsqu00a.xn--0zwm56d", unicodeDom: "例子.测试", utf8: true},
		{in: "josé@bücher.example", norm: "josé@xn--bcher-kva.example", unicodeDom: "bücher.example", utf8: true},
		{in: "user@BÜCHER.example", norm: "user@xn--bcher-kva.example", unicodeDom: "bücher.example"},
		{in: "jose\u0301@example.com", norm: "jos\u00e9@example.com", utf8: true}, // NFC
		{in: "user@[192.0.2.1]", norm: "user@[192.0.2.1]"},
		{in: "user@[IPv6:2001:db8::1]", norm: "user@[IPv6:2001:db8::1]"},
		{in: "", reason: ReasonEmpty},
		{in: "   ", reason: ReasonEmpty},
		{in: "plainaddress", reason: ReasonNoAt},
		{in: "@example.com", reason: ReasonLocal},
		{in: "user@", reason: ReasonDomain},
		{in: ".user@example.com", reason: ReasonLocal},
		{in: "user.@example.com", reason: ReasonLocal},
		{in: "us..er@example.com", reason: ReasonLocal},
		{in: "us er@example.com", reason: ReasonLocal},
		{in: "a@b@example.com", reason: ReasonLocal},
		{in: `"unterminated@example.com`, reason: ReasonLocal},
		{in: `""@example.com`, reason: ReasonLocal},
		{in: "\"a\x01b\"@example.com", reason: ReasonLocal},
		{in: `"a"b@example.com`, reason: ReasonNoAt},
		{in: "John <john@example.com>", reason: ReasonLocal},
		{in: "john(comment)@example.com", reason: ReasonLocal},
		{in: "user@localhost", reason: ReasonDomain},
		{in: "user@example..com", reason: ReasonDomain},
		{in: "user@-example.com", reason: ReasonDomain},
		{in: "user@example-.com", reason: ReasonDomain},
		{in: "user@exa_mple.com", reason: ReasonDomain},
		{in: "user@example.com.", reason: ReasonDomain},
		{in: "user@example.123", reason: ReasonDomain},
		{in: "user@[300.1.1.1]", reason: ReasonDomain},
		{in: "user@[2001:db8::1]", reason: ReasonDomain},
		{in: "user@[IPv6:192.0.2.1]", reason: ReasonDomain},
		{in: "user@" + strings.Repeat("a", 64) + ".com", reason: ReasonDomain},
		{in: strings.Repeat("a", 65) + "@example.com", reason: ReasonLocalLength},
		{in: strings.Repeat("a", 64) + "@example.com", norm: strings.Repeat("a", 64) + "@example.com"},
		{in: strings.Repeat("a", 10) + "@" + strings.Repeat(strings.Repeat("b", 60)+".", 4) + "example", reason: ReasonLength},
		{in: "user\xff@example.com", reason: ReasonLocal},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			a, err := ParseAddress(c.in)
			if c.norm == "" {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("ParseAddress(%q) = %+v, %v; want SyntaxError %s", c.in, a, err, c.reason)
				}
				if se.Reason != c.reason {
					t.Fatalf("reason %q (%s), want %q", se.Reason, se.Detail, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", c.in, err)
			}
			if a.Normalized != c.norm || a.Quoted != c.quoted || a.SMTPUTF8 != c.utf8 {
				t.Fatalf("got %+v, want norm %q quoted %v utf8 %v", a, c.norm, c.quoted, c.utf8)
			}
			if c.unicodeDom != "" && a.UnicodeDomain != c.unicodeDom {
				t.Fatalf("unicode domain %q, want %q", a.UnicodeDomain, c.unicodeDom)
			}
		})
	}
}

// FuzzParseAddress checks that the parser never panics, that its
// normalised form is a fixed point, respects RFC 5321 lengths, and that
// every ASCII address it accepts (not a literal) is also accepted by
// net/mail's independent RFC 5322 parser with the same domain.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"john.doe@example.com", `"john doe"@example.com`, `"a\"b"@x.org`,
		"用户@例子.测试", "user@[IPv6:2001:db8::1]", "user@[192.0.2.1]", "a@b@c", "@", `"@"@a.b`,
		"josé@bücher.example", "x@xn--bcher-kva.example", "a.b.c@d.e.f", "\"\\\x7f\"@a.bc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("non-SyntaxError %T %v", err, err)
			}
			return
		}
		if len(a.Normalized) > maxAddress {
			t.Fatalf("accepted %d-octet address", len(a.Normalized))
		}
		b, err := ParseAddress(a.Normalized)
		if err != nil {
			t.Fatalf("normalised %q of %q does not parse: %v", a.Normalized, s, err)
		}
		if b != a {
			t.Fatalf("not a fixed point: %+v then %+v", a, b)
		}
		if !a.Literal && !a.SMTPUTF8 {
			m, err := mail.ParseAddress(a.Normalized)
			if err != nil {
				t.Fatalf("net/mail rejects %q: %v", a.Normalized, err)
			}
			if i := strings.LastIndexByte(m.Address, '@'); !strings.EqualFold(m.Address[i+1:], a.Domain) {
				t.Fatalf("net/mail domain %q, ours %q", m.Address[i+1:], a.Domain)
			}
		}
	})
}
