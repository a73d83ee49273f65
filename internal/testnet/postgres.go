package testnet

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresServer is the PostgreSQL server store tests run against (trust
// auth on loopback, as on the development machine and in CI);
// PETREL_TEST_POSTGRES overrides it ("postgres://user@host:port").
func PostgresServer() string {
	if v := os.Getenv("PETREL_TEST_POSTGRES"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "postgres://postgres@127.0.0.1:5432"
}

// PostgresDB creates a fresh, uniquely named database on PostgresServer
// and returns its URL; it is dropped when t ends. Without a reachable
// server t is skipped (failed under CI, SkipOrFail).
func PostgresDB(t testing.TB) string {
	t.Helper()
	adminURL := PostgresServer() + "/postgres?sslmode=disable"
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		SkipOrFail(t, "PostgreSQL at %s unreachable: %v", adminURL, err)
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
