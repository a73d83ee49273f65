package bounce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// VERP encodes and decodes signed variable envelope return paths:
// bounces+<token>@<Domain>, where the token carries a message ID and a
// recipient index and is signed with HMAC-SHA256 over Secret.
type VERP struct {
	// Domain is the bounce domain.
	Domain string
	// Secret is the HMAC key; it must not be empty.
	Secret []byte
}

// VERP errors.
var (
	// ErrVERPForeign is returned for an address that is not one of ours
	// (wrong local-part prefix or domain).
	ErrVERPForeign = errors.New("bounce: not a VERP address of this domain")
	// ErrVERPBadToken is returned for a token that does not decode or whose
	// signature does not verify (forged or garbled).
	ErrVERPBadToken = errors.New("bounce: bad VERP token")
)

// AnyRecipient is the recipient index of a return path that names only the
// message (a transaction carrying several recipients): the report's own
// recipient field then says who failed.
const AnyRecipient = 1<<31 - 1

const (
	verpPrefix = "bounces+"
	verpMACLen = 10 // bytes of HMAC-SHA256 kept (80 bits)
	maxMsgID   = 128
)

// base32 without padding, lower-cased on output: local parts are often
// case-folded by remote MTAs, so the alphabet must survive that.
var verpEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

func (v VERP) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, v.Secret)
	m.Write([]byte(strings.ToLower(v.Domain)))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:verpMACLen]
}

// Encode returns the return path for recipient rcptIndex of message msgID.
func (v VERP) Encode(msgID string, rcptIndex int) string {
	payload := binary.AppendUvarint(nil, uint64(rcptIndex))
	payload = append(payload, msgID...)
	tok := append(payload, v.mac(payload)...)
	return verpPrefix + strings.ToLower(verpEnc.EncodeToString(tok)) + "@" + strings.ToLower(v.Domain)
}

// Decode verifies addr and returns the message ID and recipient index it
// names. Addresses of another domain give ErrVERPForeign; forged or
// garbled tokens give ErrVERPBadToken.
func (v VERP) Decode(addr string) (msgID string, rcptIndex int, err error) {
	if len(v.Secret) == 0 {
		return "", 0, fmt.Errorf("%w: no secret configured", ErrVERPBadToken)
	}
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], v.Domain) {
		return "", 0, ErrVERPForeign
	}
	local := strings.ToLower(addr[:at])
	if !strings.HasPrefix(local, verpPrefix) {
		return "", 0, ErrVERPForeign
	}
	enc := strings.ToUpper(local[len(verpPrefix):])
	if len(enc) == 0 || len(enc) > 2*maxMsgID+64 {
		return "", 0, ErrVERPBadToken
	}
	tok, err := verpEnc.DecodeString(enc)
	if err != nil || len(tok) <= verpMACLen {
		return "", 0, ErrVERPBadToken
	}
	payload, sum := tok[:len(tok)-verpMACLen], tok[len(tok)-verpMACLen:]
	if !hmac.Equal(sum, v.mac(payload)) {
		return "", 0, ErrVERPBadToken
	}
	idx, n := binary.Uvarint(payload)
	if n <= 0 || idx > 1<<31-1 {
		return "", 0, ErrVERPBadToken
	}
	return string(payload[n:]), int(idx), nil
}
