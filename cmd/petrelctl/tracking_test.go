package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/policy/unsub"
	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingToken: the token petrelctl prints verifies with the data
// dir's key and carries the flags; without a key file it fails instead
// of creating one.
func TestTrackingToken(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"tracking", "token", "-data-dir", dir}, &out, &errb); code == 0 {
		t.Fatal("token minted without tracking.key")
	}
	if _, err := os.Stat(filepath.Join(dir, "tracking.key")); err == nil {
		t.Fatal("tracking.key created by petrelctl")
	}
	secret, err := unsub.LoadOrCreateSecret(filepath.Join(dir, "tracking.key"))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"tracking", "token", "-data-dir", dir, "-kind", "click", "-campaign", "spring", "-url", "https://shop.test/x", "-provider", "qq"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s, _ := tracking.NewSigner(secret)
	tok, err := s.Decode(strings.TrimSpace(out.String()))
	if err != nil || tok.Kind != tracking.Click || tok.Campaign != "spring" || tok.URL != "https://shop.test/x" || tok.Provider != "qq" {
		t.Fatalf("token %+v %v", tok, err)
	}
}
