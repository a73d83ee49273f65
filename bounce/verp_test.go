package bounce

import (
	"errors"
	"strings"
	"testing"
)

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
