package ingest

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Mailbox is an address accepted by ParseMailbox.
type Mailbox struct {
	// Local is the local part exactly as written (quotes kept).
	Local string
	// Domain is the domain as written, or the address literal with its
	// brackets ("[192.0.2.1]").
	Domain string
	// UTF8 reports that the address uses non-ASCII characters (RFC 6531).
	UTF8 bool
}

// String returns local@domain.
func (m Mailbox) String() string { return m.Local + "@" + m.Domain }

// DomainKey is the domain lower-cased, for comparisons (local_domains,
// From domain checks).
func (m Mailbox) DomainKey() string { return strings.ToLower(m.Domain) }

// Address syntax errors.
var (
	ErrAddrEmpty   = errors.New("empty address")
	ErrAddrSyntax  = errors.New("invalid address syntax")
	ErrAddrLength  = errors.New("address too long")
	ErrAddrUTF8    = errors.New("non-ASCII address without SMTPUTF8")
	ErrAddrLiteral = errors.New("invalid address literal")
)

// RFC 5321 4.5.3.1 limits, in octets.
const (
	maxLocalPart = 64
	maxDomainLen = 255
	maxMailbox   = 254 // a 256-octet path minus "<" and ">"
	maxLabel     = 63
)

// ParseMailbox parses s as an RFC 5321 Mailbox: a Dot-string or
// Quoted-string local part, "@", then a domain or an address literal
// ([IPv4], [IPv6:...]). Nothing else is accepted: no angle brackets,
// comments, display names, source routes or surrounding spaces. With utf8
// (the client declared SMTPUTF8), UTF-8 is allowed in the local part and as
// IDNA U-labels in the domain (RFC 6531); otherwise only ASCII.
func ParseMailbox(s string, utf8ok bool) (Mailbox, error) {
	if s == "" {
		return Mailbox{}, ErrAddrEmpty
	}
	if len(s) > maxMailbox {
		return Mailbox{}, ErrAddrLength
	}
	if !utf8.ValidString(s) {
		return Mailbox{}, ErrAddrSyntax
	}
	var m Mailbox
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			if !utf8ok {
				return Mailbox{}, ErrAddrUTF8
			}
			m.UTF8 = true
			break
		}
	}
	at, err := localPartEnd(s)
	if err != nil {
		return Mailbox{}, err
	}
	if at >= len(s) || s[at] != '@' {
		return Mailbox{}, ErrAddrSyntax
	}
	m.Local, m.Domain = s[:at], s[at+1:]
	if len(m.Local) > maxLocalPart {
		return Mailbox{}, ErrAddrLength
	}
	if strings.HasPrefix(m.Domain, "[") {
		if err := checkLiteral(m.Domain); err != nil {
			return Mailbox{}, err
		}
		return m, nil
	}
	if err := checkDomain(m.Domain); err != nil {
		return Mailbox{}, err
	}
	return m, nil
}

// localPartEnd returns the index just past the local part at the start of
// s, validating it as Dot-string or Quoted-string.
func localPartEnd(s string) (int, error) {
	if s[0] == '"' {
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '"':
				return i + 1, nil
			case c == '\\':
				// quoted-pairSMTP = %d92 %d32-126
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return 0, ErrAddrSyntax
				}
				i++
			case c >= 32 && c <= 126: // qtextSMTP: 32-33, 35-91, 93-126 ('"' and '\' handled above)
			case c >= utf8.RuneSelf: // UTF8-non-ascii (RFC 6531), already gated
			default:
				return 0, ErrAddrSyntax
			}
		}
		return 0, ErrAddrSyntax
	}
	prevDot := true // a Dot-string cannot start with "."
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '@':
			if prevDot {
				return 0, ErrAddrSyntax
			}
			return i, nil
		case c == '.':
			if prevDot {
				return 0, ErrAddrSyntax
			}
			prevDot = true
		case isAtext(c) || c >= utf8.RuneSelf:
			prevDot = false
		default:
			return 0, ErrAddrSyntax
		}
	}
	return 0, ErrAddrSyntax
}

// isAtext reports whether c is RFC 5322 atext (ASCII).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkDomain validates an RFC 5321 Domain (LDH labels), allowing IDNA
// U-labels when the domain is non-ASCII (the caller gated SMTPUTF8).
func checkDomain(d string) error {
	if d == "" || len(d) > maxDomainLen {
		return ErrAddrSyntax
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > maxLabel {
			return ErrAddrSyntax
		}
		ascii := true
		for i := 0; i < len(label); i++ {
			if label[i] >= utf8.RuneSelf {
				ascii = false
				break
			}
		}
		if !ascii {
			// A U-label must convert to a valid A-label.
			a, err := idna.Registration.ToASCII(label)
			if err != nil || a == "" || len(a) > maxLabel {
				return ErrAddrSyntax
			}
			continue
		}
		if !isLetDig(label[0]) || !isLetDig(label[len(label)-1]) {
			return ErrAddrSyntax
		}
		for i := 1; i < len(label)-1; i++ {
			if !isLetDig(label[i]) && label[i] != '-' {
				return ErrAddrSyntax
			}
		}
	}
	return nil
}

func isLetDig(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkLiteral validates "[IPv4]" or "[IPv6:addr]". General address
// literals (tag:content) are refused: nothing routes them.
func checkLiteral(d string) error {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return ErrAddrLiteral
	}
	in := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return ErrAddrLiteral
		}
		return nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil || !a.Is4() {
		return ErrAddrLiteral
	}
	return nil
}
