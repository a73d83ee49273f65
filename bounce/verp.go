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
//
// The token is base32 (lower case, no padding) of
//
//	flag(1) | uvarint(rcptIndex) | id | HMAC-SHA256(Secret, domain 0 payload)[:10]
//
// where flag 1 means id is the 16 raw bytes of a queue message ID (26
// characters of lower-case base32hex) and flag 0 means id is the ID string
// itself. With a queue ID the local part is at most 60 octets, inside RFC
// 5321's 64-octet limit.
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

	// Token flags: how the message ID is carried.
	verpIDString = 0 // the ID's bytes as given
	verpIDQueue  = 1 // 16 raw bytes of a 26-character base32hex queue ID

	queueIDLen = 26
)

// base32 without padding, lower-cased on output: local parts are often
// case-folded by remote MTAs, so the alphabet must survive that.
var verpEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// queueIDEnc is the queue's message-ID alphabet (lower-case base32hex).
var queueIDEnc = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// queueIDBytes returns the 16 raw bytes of a canonical queue message ID.
func queueIDBytes(id string) ([]byte, bool) {
	if len(id) != queueIDLen {
		return nil, false
	}
	b, err := queueIDEnc.DecodeString(id)
	if err != nil || len(b) != 16 || queueIDEnc.EncodeToString(b) != id {
		return nil, false // not lower case, or non-zero trailing bits
	}
	return b, true
}

func (v VERP) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, v.Secret)
	m.Write([]byte(strings.ToLower(v.Domain)))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:verpMACLen]
}

// Encode returns the return path for recipient rcptIndex of message msgID.
func (v VERP) Encode(msgID string, rcptIndex int) string {
	var payload []byte
	raw, isQueueID := queueIDBytes(msgID)
	if isQueueID {
		payload = append(payload, verpIDQueue)
	} else {
		payload = append(payload, verpIDString)
	}
	payload = binary.AppendUvarint(payload, uint64(rcptIndex))
	if isQueueID {
		payload = append(payload, raw...)
	} else {
		payload = append(payload, msgID...)
	}
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
	if err != nil || len(tok) <= verpMACLen+1 {
		return "", 0, ErrVERPBadToken
	}
	payload, sum := tok[:len(tok)-verpMACLen], tok[len(tok)-verpMACLen:]
	if !hmac.Equal(sum, v.mac(payload)) {
		return "", 0, ErrVERPBadToken
	}
	flag, rest := payload[0], payload[1:]
	idx, n := binary.Uvarint(rest)
	if n <= 0 || idx > AnyRecipient {
		return "", 0, ErrVERPBadToken
	}
	id := rest[n:]
	switch flag {
	case verpIDString:
		return string(id), int(idx), nil
	case verpIDQueue:
		if len(id) != 16 {
			return "", 0, ErrVERPBadToken
		}
		return queueIDEnc.EncodeToString(id), int(idx), nil
	}
	return "", 0, ErrVERPBadToken
}
