package audience

import (
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// idnaProfile converts a domain to its A-label form with the checks of
// IDNA2008 lookup (what a mail client must do before resolving it).
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.ValidateLabels(true), idna.StrictDomainName(false))

// NormalizeEmail returns addr with its domain lower-cased and converted
// to A-labels (IDN → punycode) and the local part kept as given, plus the
// key contacts are compared by (the normalised address lower-cased, so
// local parts compare case-insensitively). It returns an error naming
// the problem for anything that is not a single bare address.
func NormalizeEmail(addr string) (email, key string, err error) {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return "", "", invalid("invalid_email", "email is empty")
	case len(addr) > 254:
		return "", "", invalid("invalid_email", "email is longer than 254 bytes")
	case !utf8.ValidString(addr):
		return "", "", invalid("invalid_email", "email is not valid UTF-8")
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", invalid("invalid_email", "email %q has no local part or domain", addr)
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > 64 {
		return "", "", invalid("invalid_email", "email %q: local part longer than 64 bytes", addr)
	}
	ascii, err := idnaProfile.ToASCII(strings.TrimSuffix(domain, "."))
	if err != nil || !strings.Contains(ascii, ".") {
		return "", "", invalid("invalid_email", "email %q: invalid domain", addr)
	}
	ascii = strings.ToLower(ascii)
	email = local + "@" + ascii
	// net/mail checks the local part's syntax (dot-atom or quoted string).
	p, err := mail.ParseAddress("<" + email + ">")
	if err != nil || p.Address != email {
		return "", "", invalid("invalid_email", "email %q: invalid address syntax", addr)
	}
	return email, strings.ToLower(email), nil
}
