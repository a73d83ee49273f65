package bounce

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// TestVERPLocalPartLength checks RFC 5321's 64-octet local-part limit for
// every queue message ID shape and every recipient index width.
func TestVERPLocalPartLength(t *testing.T) {
	v := VERP{Domain: "bounce.example.com", Secret: []byte("s3cret")}
	enc := base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)
	for i := range 200 {
		var b [16]byte
		rand.Read(b[:])
		if i == 0 {
			for j := range b {
				b[j] = 0xff
			}
		}
		id := enc.EncodeToString(b[:])
		for _, idx := range []int{0, 127, 128, 1 << 20, AnyRecipient} {
			addr := v.Encode(id, idx)
			local := addr[:strings.LastIndexByte(addr, '@')]
			if len(local) > 64 {
				t.Fatalf("Encode(%q,%d): local part %q is %d octets, over 64", id, idx, local, len(local))
			}
			gotID, gotIdx, err := v.Decode(addr)
			if err != nil || gotID != id || gotIdx != idx {
				t.Fatalf("Decode(Encode(%q,%d)) = %q,%d,%v", id, idx, gotID, gotIdx, err)
			}
		}
	}
}

// signedToken builds a correctly signed token over an arbitrary payload,
// to check that Decode still validates what the signature covers.
func signedToken(v VERP, payload []byte) string {
	tok := append(append([]byte(nil), payload...), v.mac(payload)...)
	return verpPrefix + strings.ToLower(verpEnc.EncodeToString(tok)) + "@" + v.Domain
}

func TestVERPRoundTrip(t *testing.T) {
	v := VERP{Domain: "bounce.example.com", Secret: []byte("s3cret")}
	tests := []struct {
		msgID string
		idx   int
	}{
		{"01J9ZK3Q8M2", 0},
		{"01J9ZK3Q8M2", 1},
		{"a-much-longer-message-id-0123456789abcdef", 4095},
		{"", 7},
		{"x", 1<<31 - 1},
		{"0c2l8q1ju4a1e1v7f3k0g5d2hs", 0},
		{"0c2l8q1ju4a1e1v7f3k0g5d2hs", AnyRecipient},
		{"0C2L8Q1JU4A1E1V7F3K0G5D2HS", 2}, // not canonical: carried as a string
		{"0c2l8q1ju4a1e1v7f3k0g5d2ht", 2}, // non-zero trailing bits: a string
	}
	for _, tt := range tests {
		addr := v.Encode(tt.msgID, tt.idx)
		if !strings.HasPrefix(addr, "bounces+") || !strings.HasSuffix(addr, "@bounce.example.com") {
			t.Fatalf("Encode(%q,%d) = %q: wrong shape", tt.msgID, tt.idx, addr)
		}
		if addr != strings.ToLower(addr) {
			t.Errorf("Encode = %q: not lower case", addr)
		}
		for _, in := range []string{addr, strings.ToUpper(addr), "<" + addr + ">"} {
			id, idx, err := v.Decode(in)
			if err != nil || id != tt.msgID || idx != tt.idx {
				t.Errorf("Decode(%q) = %q,%d,%v; want %q,%d", in, id, idx, err, tt.msgID, tt.idx)
			}
		}
	}
}

func TestVERPRejects(t *testing.T) {
	v := VERP{Domain: "bounce.example.com", Secret: []byte("s3cret")}
	good := v.Encode("MSG1", 3)
	other := VERP{Domain: "bounce.example.com", Secret: []byte("other")}.Encode("MSG1", 3)
	local := strings.TrimSuffix(good, "@bounce.example.com")
	// Flip one token character.
	flipped := []byte(local)
	last := len(flipped) - 1
	if flipped[last] == 'a' {
		flipped[last] = 'b'
	} else {
		flipped[last] = 'a'
	}
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"other secret", other, ErrVERPBadToken},
		{"flipped char", string(flipped) + "@bounce.example.com", ErrVERPBadToken},
		{"truncated", local[:len(local)-4] + "@bounce.example.com", ErrVERPBadToken},
		{"garbage", "bounces+!!!!@bounce.example.com", ErrVERPBadToken},
		{"empty token", "bounces+@bounce.example.com", ErrVERPBadToken},
		{"too long", "bounces+" + strings.Repeat("a", 1000) + "@bounce.example.com", ErrVERPBadToken},
		{"other domain", strings.Replace(good, "bounce.example.com", "evil.example", 1), ErrVERPForeign},
		{"no prefix", "postmaster@bounce.example.com", ErrVERPForeign},
		{"no at", "bounces+abc", ErrVERPForeign},
		{"signed unknown flag", signedToken(v, append([]byte{7, 1}, "MSG1"...)), ErrVERPBadToken},
		{"signed short queue id", signedToken(v, append([]byte{verpIDQueue, 1}, make([]byte, 15)...)), ErrVERPBadToken},
		{"signed huge index", signedToken(v, binary.AppendUvarint([]byte{verpIDString}, 1<<40)), ErrVERPBadToken},
		{"signed flag only", signedToken(v, []byte{verpIDString}), ErrVERPBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := v.Decode(tt.addr)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%q) err = %v, want %v", tt.addr, err, tt.want)
			}
		})
	}
	if _, _, err := (VERP{Domain: "bounce.example.com"}).Decode(good); !errors.Is(err, ErrVERPBadToken) {
		t.Fatalf("no secret: err = %v", err)
	}
}
