// Package unsub owns List-Unsubscribe (RFC 2369, RFC 8058) tokens: an
// HMAC-SHA256-signed, URL- and local-part-safe encoding of (stream,
// recipient) that the one-click endpoint and the mailto address carry, so
// the token alone authorises suppressing that recipient in that stream.
//
// Format: base64url(stream 0x00 recipient) "." base64url(HMAC[:12]).
// Tokens do not expire: RFC 8058 links must keep working for the life of
// the message.
package unsub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// macLen is how many bytes of the HMAC a token carries (96 bits).
const macLen = 12

// maxToken bounds what Parse looks at.
const maxToken = 1024

// ErrInvalid is returned for malformed or forged tokens.
var ErrInvalid = errors.New("unsub: invalid token")

// Tokens makes and checks tokens with one secret.
type Tokens struct{ key []byte }

// New returns Tokens keyed by secret (at least 16 bytes).
func New(secret []byte) (*Tokens, error) {
	if len(secret) < 16 {
		return nil, errors.New("unsub: secret must be at least 16 bytes")
	}
	return &Tokens{key: append([]byte(nil), secret...)}, nil
}

// LoadOrCreateSecret returns the hex secret stored at path, creating a
// random 32-byte one (mode 0600) the first time.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("unsub: secret file %s is not 16+ hex bytes", path)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("unsub: %w", err)
	}
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("unsub: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("unsub: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unsub: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(s) + "\n")
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("unsub: write secret: %w", werr)
	}
	return s, nil
}

func (t *Tokens) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, t.key)
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}

// Make returns the token for recipient rcpt in stream. The recipient is
// lower-cased, matching the suppression list's case-insensitive lookups.
func (t *Tokens) Make(stream, rcpt string) string {
	payload := []byte(stream + "\x00" + strings.ToLower(rcpt))
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(t.mac(payload))
}

// Parse checks tok and returns the stream and recipient it names. Any
// malformed or forged token gives ErrInvalid.
func (t *Tokens) Parse(tok string) (stream, rcpt string, err error) {
	// The base64 decoder skips CR and LF even in Strict mode, so an edited
	// token with a line break in it would verify (found by FuzzParse).
	if len(tok) > maxToken || strings.ContainsAny(tok, "\r\n") {
		return "", "", ErrInvalid
	}
	p, m, ok := strings.Cut(tok, ".")
	if !ok {
		return "", "", ErrInvalid
	}
	enc := base64.RawURLEncoding.Strict()
	payload, err := enc.DecodeString(p)
	if err != nil {
		return "", "", ErrInvalid
	}
	mac, err := enc.DecodeString(m)
	if err != nil || len(mac) != macLen || !hmac.Equal(mac, t.mac(payload)) {
		return "", "", ErrInvalid
	}
	stream, rcpt, ok = strings.Cut(string(payload), "\x00")
	if !ok || stream == "" || rcpt == "" {
		return "", "", ErrInvalid
	}
	return stream, rcpt, nil
}

// Headers returns the List-Unsubscribe and List-Unsubscribe-Post header
// lines (CRLF-terminated) for rcpt in stream: the one-click HTTPS URL
// <baseURL>/unsubscribe/<token> when baseURL is set, and
// mailto:unsubscribe+<token>@<mailDomain> when mailDomain is set. It
// returns nil when neither is configured. List-Unsubscribe-Post is only
// added with an HTTPS URL (RFC 8058 section 3.1).
func (t *Tokens) Headers(baseURL, mailDomain, stream, rcpt string) []byte {
	tok := t.Make(stream, rcpt)
	var uris []string
	if baseURL != "" {
		uris = append(uris, "<"+strings.TrimRight(baseURL, "/")+"/unsubscribe/"+tok+">")
	}
	if mailDomain != "" {
		uris = append(uris, "<mailto:unsubscribe+"+tok+"@"+mailDomain+">")
	}
	if len(uris) == 0 {
		return nil
	}
	h := "List-Unsubscribe: " + strings.Join(uris, ",\r\n ") + "\r\n"
	if baseURL != "" {
		h += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	}
	return []byte(h)
}

// MailtoToken extracts the token from an unsubscribe+<token>@domain
// recipient address; ok is false for other addresses.
func MailtoToken(addr string) (tok string, ok bool) {
	local, _, found := strings.Cut(addr, "@")
	if !found {
		return "", false
	}
	return strings.CutPrefix(local, "unsubscribe+")
}
