package verify

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Address is a parsed, syntactically valid mailbox (RFC 5321 Mailbox,
// extended by RFC 6531 for UTF-8 local parts and IDNA domains).
type Address struct {
	// Local is the local part with any quoting removed ("john doe" for
	// `"john doe"@example.com`), in Unicode NFC.
	Local string `json:"local"`
	// Domain is the lower-case ASCII (A-label) domain, or an address
	// literal such as "[192.0.2.1]".
	Domain string `json:"domain"`
	// UnicodeDomain is Domain with A-labels shown as Unicode (U-labels).
	UnicodeDomain string `json:"unicode_domain"`
	// Normalized is the canonical mailbox: the local part in its simplest
	// form (quoted only when it must be), "@", and the ASCII domain. The
	// local part keeps its case (RFC 5321 2.4: it is case-sensitive).
	Normalized string `json:"normalized"`
	// Quoted reports that the local part needs a quoted string.
	Quoted bool `json:"quoted"`
	// SMTPUTF8 reports that the local part is non-ASCII, so delivery needs
	// the SMTPUTF8 extension (RFC 6531).
	SMTPUTF8 bool `json:"smtputf8"`
	// Literal reports that the domain is an address literal.
	Literal bool `json:"literal"`
}

// SyntaxError says why an address is not a valid mailbox. Reason is a
// stable machine-readable code.
type SyntaxError struct {
	Reason string
	Detail string
}

func (e *SyntaxError) Error() string { return "verify: invalid address: " + e.Reason + ": " + e.Detail }

// Syntax error reasons.
const (
	ReasonEmpty       = "empty"
	ReasonNoAt        = "missing_at"
	ReasonLocal       = "invalid_local_part"
	ReasonLocalLength = "local_part_too_long"
	ReasonDomain      = "invalid_domain"
	ReasonLength      = "address_too_long"
)

func synErr(reason, detail string) error { return &SyntaxError{Reason: reason, Detail: detail} }

// Limits from RFC 5321 4.5.3.1 (octets).
const (
	maxLocal   = 64
	maxDomain  = 253
	maxAddress = 254 // 256-octet path minus the angle brackets
)

// idnaProfile is the UTS #46 lookup profile with STD3 (LDH) rules and
// length checks: what a resolver would accept.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.VerifyDNSLength(true), idna.StrictDomainName(true))

// ParseAddress parses s as a mailbox. Surrounding white space is ignored;
// anything else not in the grammar (display names, comments, angle
// brackets, source routes) is an error, because RCPT TO accepts only the
// RFC 5321 Mailbox form.
func ParseAddress(s string) (Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Address{}, synErr(ReasonEmpty, "empty address")
	}
	if !utf8.ValidString(s) {
		return Address{}, synErr(ReasonLocal, "not valid UTF-8")
	}
	local, quoted, rest, err := parseLocal(s)
	if err != nil {
		return Address{}, err
	}
	if !strings.HasPrefix(rest, "@") {
		return Address{}, synErr(ReasonNoAt, "no @ after the local part")
	}
	local = norm.NFC.String(local)
	a := Address{Local: local}
	if err := parseDomain(rest[1:], &a); err != nil {
		return Address{}, err
	}
	// Quoting: needed only when the content is not a dot-string.
	a.Quoted = quoted && !isDotString(local)
	lp := local
	if a.Quoted {
		lp = quote(local)
	}
	if len(lp) > maxLocal {
		return Address{}, synErr(ReasonLocalLength, "local part longer than 64 octets")
	}
	a.Normalized = lp + "@" + a.Domain
	if len(a.Normalized) > maxAddress {
		return Address{}, synErr(ReasonLength, "address longer than 254 octets")
	}
	for i := 0; i < len(local); i++ {
		if local[i] >= utf8.RuneSelf {
			a.SMTPUTF8 = true
			break
		}
	}
	return a, nil
}

// parseLocal reads a Dot-string or Quoted-string from the front of s and
// returns its (unquoted) value and the rest of s.
func parseLocal(s string) (local string, quoted bool, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '"':
				if b.Len() == 0 {
					return "", false, "", synErr(ReasonLocal, "empty quoted string")
				}
				return b.String(), true, s[i+1:], nil
			case r == '\\':
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return "", false, "", synErr(ReasonLocal, "bad quoted-pair")
				}
				b.WriteByte(s[i+1])
				i += 2
				continue
			case r >= 32 && r <= 126, r >= utf8.RuneSelf && isUTF8Allowed(r):
				b.WriteRune(r)
			default:
				return "", false, "", synErr(ReasonLocal, "control character in quoted string")
			}
			i += n
		}
		return "", false, "", synErr(ReasonLocal, "unterminated quoted string")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", false, "", synErr(ReasonNoAt, "no @")
	}
	local = s[:at]
	if local == "" {
		return "", false, "", synErr(ReasonLocal, "empty local part")
	}
	if !isDotString(local) {
		return "", false, "", synErr(ReasonLocal, "local part is not a dot-atom (quote it)")
	}
	return local, false, s[at:], nil
}

// isUTF8Allowed excludes non-ASCII control and format characters that RFC
// 6532 leaves out of UTF8-non-ascii in practice (C1 controls, NUL-alikes).
func isUTF8Allowed(r rune) bool {
	return r != utf8.RuneError && !(r >= 0x80 && r <= 0x9f) && r != 0x2028 && r != 0x2029 && r != 0xfeff
}

// isAtext reports RFC 5322 atext plus RFC 6531 UTF8-non-ascii.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		return true
	case r >= utf8.RuneSelf:
		return isUTF8Allowed(r)
	}
	return false
}

// isDotString reports whether s is Atom *("." Atom).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r != '.' && !isAtext(r) {
			return false
		}
	}
	return true
}

// quote renders s as an RFC 5321 Quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// parseDomain validates d as a domain name (converted to ASCII by IDNA)
// or an address literal, and fills a.Domain, a.UnicodeDomain, a.Literal.
func parseDomain(d string, a *Address) error {
	if d == "" {
		return synErr(ReasonDomain, "empty domain")
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return synErr(ReasonDomain, "unterminated address literal")
		}
		lit := d[1 : len(d)-1]
		var ip netip.Addr
		var err error
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			ip, err = netip.ParseAddr(v6)
			if err == nil && !ip.Is6() {
				err = errors.New("not IPv6")
			}
		} else {
			ip, err = netip.ParseAddr(lit)
			if err == nil && !ip.Is4() {
				err = errors.New("IPv6 literal needs the IPv6: tag")
			}
		}
		if err != nil || ip.Zone() != "" {
			return synErr(ReasonDomain, "bad address literal")
		}
		if ip.Is6() {
			a.Domain = "[IPv6:" + ip.String() + "]"
		} else {
			a.Domain = "[" + ip.String() + "]"
		}
		a.UnicodeDomain, a.Literal = a.Domain, true
		return nil
	}
	if strings.HasSuffix(d, ".") {
		return synErr(ReasonDomain, "trailing dot")
	}
	ascii, err := idnaProfile.ToASCII(d)
	if err != nil {
		return synErr(ReasonDomain, err.Error())
	}
	ascii = strings.ToLower(ascii)
	if len(ascii) > maxDomain {
		return synErr(ReasonDomain, "domain longer than 253 octets")
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return synErr(ReasonDomain, "domain needs at least two labels")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return synErr(ReasonDomain, "bad label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return synErr(ReasonDomain, "bad character in domain")
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return synErr(ReasonDomain, "numeric top-level domain")
	}
	uni, err := idna.Display.ToUnicode(ascii)
	if err != nil {
		uni = ascii
	}
	a.Domain, a.UnicodeDomain = ascii, uni
	return nil
}
