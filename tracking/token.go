package tracking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// Kind is what a token tracks.
type Kind byte

// Token kinds.
const (
	Open  Kind = 'o'
	Click Kind = 'c'
)

// Token is what a tracking URL carries. Message and Recipient are opaque
// ids chosen by the sender (the campaign engine uses its per-recipient
// idempotency key and the contact id), so a token never carries an email
// address. URL is the original link target (Click only): the redirect
// goes exactly there and nowhere else.
type Token struct {
	Kind Kind
	// Campaign groups messages in the stats (a campaign id, or the call
	// name of a transactional template); "" is counted under "".
	Campaign  string
	Message   string
	Recipient string
	// Link is the link's position in the message (0-based, Click only).
	Link int
	URL  string
	// Sent is when the message was rendered (unix seconds), so a click or
	// open seconds after sending can be recognised as a scanner's without
	// a lookup.
	Sent int64
	// Provider is the recipient's mailbox provider label (events.Provider
	// of its MX host or domain: google, outlook, yahoo, apple, qq, 163,
	// ..., other), so the stats split engagement by provider without a
	// lookup; "" unknown.
	Provider string
	// Stream is the message's stream (marketing, transactional): the
	// campaign type of the stats; "" unknown.
	Stream string
}

// ErrBadToken is returned by Decode for a token that is malformed,
// truncated or whose signature does not verify.
var ErrBadToken = errors.New("tracking: bad token")

// tokenVersion is the first byte of every encoded token. Version 1
// tokens (no provider and stream) still decode.
const (
	tokenVersion  = 2
	tokenVersion1 = 1
)

// macSize is the truncated HMAC-SHA256 length (128 bits).
const macSize = 16

// maxTokenField bounds Message and Recipient; maxURL bounds URL.
const (
	maxTokenField = 128
	maxURL        = 4096
	maxLabel      = 64 // Provider, Stream
)

// Signer encodes and verifies tokens with an HMAC key. It is safe for
// concurrent use.
type Signer struct {
	pool sync.Pool // hash.Hash keyed with the secret
	bufs sync.Pool // *[]byte: Decode's scratch (the token, its bytes, the MAC)
}

// NewSigner returns a Signer for secret (at least 32 bytes).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("tracking: secret must be at least 32 bytes, got %d", len(secret))
	}
	key := append([]byte(nil), secret...)
	s := &Signer{}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s, nil
}

func (s *Signer) mac(payload []byte) []byte {
	return s.macTo(make([]byte, 0, sha256.Size), payload)
}

// macTo appends payload's MAC to dst (no allocation when dst has
// sha256.Size bytes of room) and returns the appended MAC.
func (s *Signer) macTo(dst, payload []byte) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(payload)
	sum := h.Sum(dst)
	s.pool.Put(h)
	return sum[len(dst) : len(dst)+macSize]
}

// Encode returns t as a URL-safe string (base64url, no padding):
// version, kind, link and sent (uvarints), four length-prefixed fields, then the
// MAC over everything before it.
func (s *Signer) Encode(t Token) (string, error) {
	if len(t.Campaign) > maxTokenField || len(t.Message) > maxTokenField || len(t.Recipient) > maxTokenField {
		return "", fmt.Errorf("tracking: token campaign/message/recipient id longer than %d bytes", maxTokenField)
	}
	if len(t.Provider) > maxLabel || len(t.Stream) > maxLabel {
		return "", fmt.Errorf("tracking: token provider/stream longer than %d bytes", maxLabel)
	}
	if len(t.URL) > maxURL {
		return "", fmt.Errorf("tracking: link longer than %d bytes", maxURL)
	}
	if t.Kind != Open && t.Kind != Click || t.Link < 0 {
		return "", fmt.Errorf("tracking: invalid token kind or link")
	}
	if t.Kind == Click && !trackable(t.URL) {
		return "", fmt.Errorf("tracking: click target %q is not an absolute http(s) URL", t.URL)
	}
	p := make([]byte, 0, 8+len(t.Message)+len(t.Recipient)+len(t.URL)+macSize)
	p = append(p, tokenVersion, byte(t.Kind))
	p = binary.AppendUvarint(p, uint64(t.Link))
	p = binary.AppendUvarint(p, uint64(max(t.Sent, 0)))
	for _, f := range []string{t.Campaign, t.Message, t.Recipient, t.URL, t.Provider, t.Stream} {
		p = binary.AppendUvarint(p, uint64(len(f)))
		p = append(p, f...)
	}
	p = append(p, s.mac(p)...)
	return base64.RawURLEncoding.EncodeToString(p), nil
}

// Decode verifies and parses a token. Any change to any byte, a
// truncation or an extension gives ErrBadToken.
func (s *Signer) Decode(str string) (Token, error) {
	if len(str) > base64.RawURLEncoding.EncodedLen(2+3*maxTokenField+maxURL+2*maxLabel+8*binary.MaxVarintLen64+macSize) {
		return Token{}, ErrBadToken
	}
	for i := 0; i < len(str); i++ { // the decoder would skip CR and LF
		if c := str[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return Token{}, ErrBadToken
		}
	}
	// Strict: a last character with nonzero unused bits is another
	// spelling of the same bytes; only the canonical one is the token.
	// The scratch holds the token's text, its bytes and the MAC, so a
	// decode allocates only the one string its fields are cut from.
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	dec := base64.RawURLEncoding.Strict()
	need := len(str) + dec.DecodedLen(len(str)) + sha256.Size
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	buf := (*bp)[:need]
	src := buf[:copy(buf, str)]
	n, err := dec.Decode(buf[len(str):], src)
	p := buf[len(str) : len(str)+n]
	if err != nil || len(p) < 2+macSize {
		return Token{}, ErrBadToken
	}
	body, sig := p[:len(p)-macSize], p[len(p)-macSize:]
	if !hmac.Equal(sig, s.macTo(buf[len(str)+n:len(str)+n], body)) {
		return Token{}, ErrBadToken
	}
	if body[0] != tokenVersion && body[0] != tokenVersion1 || (Kind(body[1]) != Open && Kind(body[1]) != Click) {
		return Token{}, ErrBadToken
	}
	t := Token{Kind: Kind(body[1])}
	rest := body[2:]
	link, n := binary.Uvarint(rest)
	if n <= 0 || link > 1<<20 {
		return Token{}, ErrBadToken
	}
	t.Link, rest = int(link), rest[n:]
	sent, n := binary.Uvarint(rest)
	if n <= 0 || sent > 1<<40 {
		return Token{}, ErrBadToken
	}
	t.Sent, rest = int64(sent), rest[n:]
	var fields [6]string
	nf := len(fields)
	if body[0] == tokenVersion1 {
		nf = 4
	}
	var spans [6][2]int // offsets into rest
	off := 0
	for i := range nf {
		l, n := binary.Uvarint(rest[off:])
		if n <= 0 || l > uint64(len(rest)-off-n) {
			return Token{}, ErrBadToken
		}
		spans[i] = [2]int{off + n, off + n + int(l)}
		off += n + int(l)
	}
	if off != len(rest) {
		return Token{}, ErrBadToken
	}
	all := string(rest) // one allocation; the fields are its substrings
	for i := range nf {
		fields[i] = all[spans[i][0]:spans[i][1]]
	}
	t.Campaign, t.Message, t.Recipient, t.URL, t.Provider, t.Stream = fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
	return t, nil
}
