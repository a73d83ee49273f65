package audience

import (
	"context"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// backendDSN returns a fresh database of the named backend: an SQLite
// file, or a new petrel_test_<random> PostgreSQL database on
// testnet.PostgresServer (PETREL_TEST_POSTGRES overrides it), dropped at
// cleanup; an unreachable server fails under CI=true and skips otherwise.
func backendDSN(t testing.TB, backend string) string { return testnet.ESPDSN(t, backend) }

var backends = testnet.ESPBackends

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
