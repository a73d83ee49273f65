package audience

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// backendDSN returns a fresh database of the named backend.
func backendDSN(t testing.TB, backend string) string {
	if backend == "postgres" {
		return testnet.PostgresDB(t) // fails under CI=true when unreachable
	}
	return filepath.Join(t.TempDir(), "esp.db")
}

var backends = []string{"sqlite", "postgres"}

// eachBackend runs f as a subtest per backend with a fresh, open store.
func eachBackend(t *testing.T, opts Options, f func(t *testing.T, s *Store)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			s, err := Open(context.Background(), backendDSN(t, b), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if s.Backend() != b {
				t.Fatalf("backend %s, want %s", s.Backend(), b)
			}
			f(t, s)
		})
	}
}
