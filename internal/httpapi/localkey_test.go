package httpapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/config"
)

// TestKeysFor: configured keys win and write no file; without them a
// 0600 key file is created once and reused (a restart keeps petrelctl's
// key valid).
func TestKeysFor(t *testing.T) {
	dir := t.TempDir()
	keys, path, err := KeysFor([]config.APIKey{{Name: "app", Key: "configured"}}, dir)
	if err != nil || path != "" {
		t.Fatalf("KeysFor(configured) = %q, %v", path, err)
	}
	if _, ok := keys.Lookup("configured"); !ok {
		t.Fatal("configured key not accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, LocalKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("configured keys wrote %s (stat err %v)", LocalKeyFile, err)
	}

	keys, path, err = KeysFor(nil, dir)
	if err != nil || path != filepath.Join(dir, LocalKeyFile) {
		t.Fatalf("KeysFor(nil) = %q, %v", path, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	b, _ := os.ReadFile(path)
	key := strings.TrimSpace(string(b))
	if len(key) != 64 {
		t.Fatalf("generated key %q is not 32 bytes of hex", key)
	}
	if k, ok := keys.Lookup(key); !ok || k.Name != "local" {
		t.Fatalf("generated key not accepted: %+v %v", k, ok)
	}
	if _, ok := keys.Lookup("configured"); ok {
		t.Fatal("configured key accepted by the local keys")
	}
	again, _, err := KeysFor(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Lookup(key); !ok {
		t.Fatal("second KeysFor made a new key instead of reusing the file")
	}
}
