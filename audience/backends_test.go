package audience

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pgServer is the PostgreSQL server every store test also runs against
// (trust auth on loopback, as on the development machine and in CI);
// PETREL_TEST_POSTGRES overrides it ("postgres://user@host:port").
func pgServer() string {
	if v := os.Getenv("PETREL_TEST_POSTGRES"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "postgres://postgres@127.0.0.1:5432"
}

// newPGDatabase creates a fresh database and returns its URL; it is
// dropped when the test ends. Without a reachable server the test fails
// under CI=true and is skipped otherwise.
func newPGDatabase(t testing.TB) string {
	t.Helper()
	pgAdmin := pgServer() + "/postgres?sslmode=disable"
	admin, err := sql.Open("pgx", pgAdmin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s unreachable (CI needs it): %v", pgAdmin, err)
		}
		t.Skipf("PostgreSQL at %s unreachable: %v", pgAdmin, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "petrel_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	return pgServer() + "/" + name + "?sslmode=disable"
}

// backendDSN returns a fresh database of the named backend.
func backendDSN(t testing.TB, backend string) string {
	if backend == "postgres" {
		return newPGDatabase(t)
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
