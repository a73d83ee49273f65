package testnet

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

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresServer is the PostgreSQL server ESP store tests run against
// (trust auth on loopback); PETREL_TEST_POSTGRES overrides it.
func PostgresServer() string {
	if v := os.Getenv("PETREL_TEST_POSTGRES"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "postgres://postgres@127.0.0.1:5432"
}

// PostgresDB creates a fresh, uniquely named database and returns its
// URL; it is dropped (WITH FORCE) when the test ends. An unreachable
// server is SkipOrFail.
func PostgresDB(t testing.TB) string {
	t.Helper()
	admin, err := sql.Open("pgx", PostgresServer()+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		SkipOrFail(t, "PostgreSQL at %s unreachable: %v", PostgresServer(), err)
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
	return PostgresServer() + "/" + name + "?sslmode=disable"
}

// ESPBackends are the ESP database backends every store test runs on.
var ESPBackends = []string{"sqlite", "postgres"}

// ESPDSN returns a fresh database of backend: an SQLite file in a
// temporary directory, or a new PostgreSQL database.
func ESPDSN(t testing.TB, backend string) string {
	if backend == "postgres" {
		return PostgresDB(t)
	}
	return filepath.Join(t.TempDir(), "esp.db")
}
