package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/petrel-mta/petrel/config"
)

// LocalKeyFile is the API key petreld generates in its data_dir, readable
// by its owner only, when the config lists no [[http.api_keys]]: the
// embedded defaults then still give petrelctl (run by the same user) an
// authenticated API.
const LocalKeyFile = "api.key"

// KeysFor returns the Keys of the configured [[http.api_keys]], or, when
// there are none, of the local key in <dataDir>/api.key (named "local"),
// which it creates on first use; localPath is that file ("" when
// configured keys are used).
func KeysFor(configured []config.APIKey, dataDir string) (keys *Keys, localPath string, err error) {
	if len(configured) > 0 {
		return NewKeys(configured), "", nil
	}
	k, path, err := localAPIKey(dataDir)
	if err != nil {
		return nil, "", err
	}
	return NewKeys([]config.APIKey{{Name: "local", Key: k}}), path, nil
}

// localAPIKey returns the key in <dataDir>/api.key, creating it (32
// random bytes, hex) on first use.
func localAPIKey(dataDir string) (key, path string, err error) {
	path = filepath.Join(dataDir, LocalKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, path, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("read %s: %w", path, err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+).
	key = hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", "", fmt.Errorf("install %s: %w", path, err)
	}
	return key, path, nil
}
