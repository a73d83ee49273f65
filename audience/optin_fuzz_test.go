package audience

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzConfirmToken feeds arbitrary strings to the public confirm route's
// token check: no panic, and nothing but a genuine token (the seed made
// by the confirmer itself) verifies; a token with a byte changed never
// does.
func FuzzConfirmToken(f *testing.F) {
	s, err := Open(context.Background(), filepath.Join(f.TempDir(), "esp.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	ctx := context.Background()
	a, err := s.CreateAudience(ctx, Audience{Name: "news", DoubleOptIn: true})
	if err != nil {
		f.Fatal(err)
	}
	ct, _, err := s.UpsertContact(ctx, a.ID, ContactInput{Email: "ann@example.test"})
	if err != nil {
		f.Fatal(err)
	}
	key, err := s.metaSecret(ctx, "optin_key")
	if err != nil {
		f.Fatal(err)
	}
	c := &Confirmer{s: s, key: key}
	good := c.token(ct.ID, "ann@example.test", time.Now().Add(time.Hour))
	for _, seed := range []string{good, "", ".", "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", good + "x", strings.Repeat("A", 129), "%00.%00", good[:10]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		cf, err := c.Lookup(ctx, tok)
		if err == nil {
			if tok != good || cf.Contact != ct.ID {
				t.Fatalf("token %q verified as %+v", tok, cf)
			}
			return
		}
		if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("token %q: unexpected error %v", tok, err)
		}
	})
}
