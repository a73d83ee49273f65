package account

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// pgServer is the PostgreSQL every store test also runs on
// (PETREL_TEST_POSTGRES overrides it).
func pgServer() string {
	if v := os.Getenv("PETREL_TEST_POSTGRES"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "postgres://postgres@127.0.0.1:5432"
}

// openDB returns a fresh database of the backend, dropped at the end.
func openDB(t *testing.T, backend string) (*sql.DB, bool) {
	t.Helper()
	if backend == "sqlite" {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "esp.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, false
	}
	admin, err := sql.Open("pgx", pgServer()+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable (CI needs it): %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "petrel_account_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", pgServer()+"/"+name+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	})
	return db, true
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func eachBackend(t *testing.T, f func(t *testing.T, s *Store, clk *clock)) {
	for _, b := range []string{"sqlite", "postgres"} {
		t.Run(b, func(t *testing.T) {
			db, pg := openDB(t, b)
			clk := &clock{t: time.Unix(1_800_000_000, 0)}
			s, err := Open(context.Background(), db, pg, Options{Now: clk.now, LoginFailures: 3, LoginWindow: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			// Open is idempotent (petreld runs it at every start).
			if _, err := Open(context.Background(), db, pg, Options{}); err != nil {
				t.Fatal(err)
			}
			f(t, s, clk)
		})
	}
}

// TestUsersAndSessions: users by role with argon2id hashes (the stored
// hash is a PHC string, never the password); login opens a session whose
// id is stored only as a digest; the session expires after its idle TTL
// and its absolute maximum; a wrong password fails; the last owner stays.
func TestUsersAndSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Store, clk *clock) {
		ctx := context.Background()
		for _, tt := range []struct {
			email, pw string
			role      Role
			err       error
		}{
			{"Owner@Shop.test", "long enough pw", Owner, nil},
			{"owner@shop.test", "long enough pw", Viewer, ErrExists},
			{"bad", "long enough pw", Viewer, ErrInvalid},
			{"v@shop.test", "short", Viewer, ErrInvalid},
			{"v@shop.test", "long enough pw", "admin", ErrInvalid},
			{"v@shop.test", "long enough pw", Viewer, nil},
		} {
			if _, err := s.AddUser(ctx, tt.email, "", tt.pw, tt.role); !errors.Is(err, tt.err) {
				t.Errorf("AddUser(%s, %s) = %v, want %v", tt.email, tt.role, err, tt.err)
			}
		}
		var stored string
		s.db.QueryRow(`SELECT password FROM account_users WHERE email = 'owner@shop.test'`).Scan(&stored)
		if !strings.HasPrefix(stored, "$argon2id$v=19$m=65536,t=3,p=2$") || strings.Contains(stored, "long enough") {
			t.Errorf("stored hash %q", stored)
		}
		if _, _, err := s.Login(ctx, "owner@shop.test", "wrong password", "1.2.3.4"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("wrong password: %v", err)
		}
		if _, _, err := s.Login(ctx, "nobody@shop.test", "long enough pw", "1.2.3.4"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("unknown user: %v", err)
		}
		id, sess, err := s.Login(ctx, "OWNER@shop.test", "long enough pw", "1.2.3.4")
		if err != nil || sess.User.Role != Owner || sess.CSRF != CSRFToken(id) || !CheckCSRF(id, sess.CSRF) || CheckCSRF(id, "") {
			t.Fatalf("login: %v %+v", err, sess)
		}
		var n int
		s.db.QueryRow(s.q(`SELECT COUNT(*) FROM account_sessions WHERE hash = ?`), id).Scan(&n)
		if n != 0 {
			t.Error("the session id is stored in clear")
		}
		clk.add(11 * time.Hour)
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("session within its TTL: %v", err)
		}
		clk.add(11 * time.Hour) // used 11 h ago: still within 12 h idle
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("session used within the idle TTL: %v", err)
		}
		clk.add(13 * time.Hour)
		if _, err := s.Session(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("idle session: %v, want ErrNotFound", err)
		}
		id2, _, _ := s.Login(ctx, "owner@shop.test", "long enough pw", "1.2.3.4")
		for i := 0; i < 7*24; i++ { // used every hour, but older than the maximum
			clk.add(time.Hour)
			s.Session(ctx, id2)
		}
		clk.add(time.Hour)
		if _, err := s.Session(ctx, id2); !errors.Is(err, ErrNotFound) {
			t.Errorf("session past its maximum life: %v", err)
		}
		us, _ := s.Users(ctx)
		if len(us) != 2 {
			t.Fatalf("users %+v", us)
		}
		ownerID := us[0].ID
		if err := s.SetRole(ctx, ownerID, Viewer); !errors.Is(err, ErrLastOwner) {
			t.Errorf("demote the last owner: %v", err)
		}
		if err := s.DeleteUser(ctx, ownerID); !errors.Is(err, ErrLastOwner) {
			t.Errorf("delete the last owner: %v", err)
		}
		id3, _, _ := s.Login(ctx, "owner@shop.test", "long enough pw", "1.2.3.4")
		if err := s.SetPassword(ctx, ownerID, "another long pw"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, id3); !errors.Is(err, ErrNotFound) {
			t.Errorf("a session survived the password change: %v", err)
		}
		if err := s.Logout(ctx, "nothing"); err != nil {
			t.Errorf("logout of an unknown id: %v", err)
		}
	})
}

// TestLoginRateLimit: failures lock the email (from any client) and the
// client (for any email) until the window ends; a success resets the
// email's count.
func TestLoginRateLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Store, clk *clock) {
		ctx := context.Background()
		s.AddUser(ctx, "a@shop.test", "", "long enough pw", Owner)
		s.AddUser(ctx, "b@shop.test", "", "long enough pw", Viewer)
		for i := 0; i < 3; i++ {
			s.Login(ctx, "a@shop.test", "wrong", "10.0.0."+string(rune('1'+i)))
		}
		if _, _, err := s.Login(ctx, "a@shop.test", "long enough pw", "10.0.0.9"); !errors.Is(err, ErrRateLimited) {
			t.Errorf("email locked from a new client: %v", err)
		}
		if _, _, err := s.Login(ctx, "b@shop.test", "long enough pw", "10.0.0.9"); err != nil {
			t.Errorf("another email from a new client: %v", err)
		}
		for i := 0; i < 3; i++ {
			s.Login(ctx, "c"+string(rune('a'+i))+"@shop.test", "wrong", "10.0.0.7")
		}
		if _, _, err := s.Login(ctx, "b@shop.test", "long enough pw", "10.0.0.7"); !errors.Is(err, ErrRateLimited) {
			t.Errorf("client locked for another email: %v", err)
		}
		clk.add(time.Minute)
		if _, _, err := s.Login(ctx, "a@shop.test", "long enough pw", "10.0.0.7"); err != nil {
			t.Errorf("after the window: %v", err)
		}
	})
}

// TestKeys: a database key's secret is shown once, stored as a digest,
// found by LookupKey with its role, stream and domains, and revoked.
func TestKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Store, clk *clock) {
		ctx := context.Background()
		secret, k, err := s.CreateKey(ctx, "shop app", Marketer, "marketing", []string{"Shop.test", " "})
		if err != nil || !strings.HasPrefix(secret, KeyPrefix) || k.Role != Marketer || k.Stream != "marketing" || len(k.Domains) != 1 || k.Domains[0] != "shop.test" || !strings.HasPrefix(secret, k.Prefix) {
			t.Fatalf("create: %v %q %+v", err, secret, k)
		}
		if _, _, err := s.CreateKey(ctx, "shop app", Viewer, "", nil); !errors.Is(err, ErrExists) {
			t.Errorf("duplicate name: %v", err)
		}
		if _, _, err := s.CreateKey(ctx, "x", Viewer, "", []string{"a@b"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad domain: %v", err)
		}
		for _, st := range []string{"Bad Stream!", "-x", "a/b"} {
			if _, _, err := s.CreateKey(ctx, "s"+st, Viewer, st, nil); !errors.Is(err, ErrInvalid) {
				t.Errorf("bad stream %q: %v", st, err)
			}
		}
		var n int
		s.db.QueryRow(s.q(`SELECT COUNT(*) FROM account_keys WHERE hash = ? OR prefix = ?`), secret, secret).Scan(&n)
		if n != 0 {
			t.Error("the secret is stored in clear")
		}
		got, err := s.LookupKey(ctx, secret)
		if err != nil || got.ID != k.ID {
			t.Fatalf("lookup: %v %+v", err, got)
		}
		for _, bad := range []string{"", "ptk_", secret + "x", strings.TrimPrefix(secret, KeyPrefix)} {
			if _, err := s.LookupKey(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("lookup %q: %v", bad, err)
			}
		}
		if err := s.DeleteKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoked key: %v", err)
		}
	})
}

// TestAllowed is the role table.
func TestAllowed(t *testing.T) {
	for _, tt := range []struct {
		role         Role
		method, path string
		ok           bool
	}{
		{Owner, "DELETE", "/api/v1/users/3", true},
		{Owner, "POST", "/api/v1/queue/flush", true},
		{Marketer, "POST", "/api/v1/campaigns/x/send", true},
		{Marketer, "POST", "/api/v1/domains", true},
		{Marketer, "GET", "/api/v1/users", false},
		{Marketer, "POST", "/api/v1/keys", false},
		{Marketer, "GET", "/api/v1/queue", false},
		{Marketer, "GET", "/api/v1/queue/stats", false},
		{Marketer, "GET", "/api/v1/suppressions", true},
		{Marketer, "DELETE", "/api/v1/suppressions/marketing/a@b.c", false},
		{Marketer, "GET", "/debug/pprof/", false},
		{Marketer, "GET", "/api/v1/usersx", true}, // not the users API (404 there)
		{Viewer, "GET", "/api/v1/campaigns/x", true},
		{Viewer, "HEAD", "/api/v1/audiences", true},
		{Viewer, "POST", "/api/v1/campaigns/x/send", false},
		{Viewer, "PATCH", "/api/v1/audiences/1/contacts/2", false},
		{Viewer, "GET", "/api/v1/keys", false},
		{Viewer, "GET", "/api/v1/session", true},
		{Viewer, "DELETE", "/api/v1/session", true},
		{"", "GET", "/api/v1/audiences", false},
	} {
		if got := Allowed(tt.role, tt.method, tt.path); got != tt.ok {
			t.Errorf("Allowed(%q, %s, %s) = %v, want %v", tt.role, tt.method, tt.path, got, tt.ok)
		}
	}
}

// TestCheckPassword refuses malformed or tampered hashes.
func TestCheckPassword(t *testing.T) {
	h := hashPassword("correct horse")
	if !checkPassword(h, "correct horse") || checkPassword(h, "correct horsE") {
		t.Fatal("round trip")
	}
	parts := strings.Split(h, "$")
	for _, bad := range []string{"", "plain", "$argon2i$" + strings.Join(parts[2:], "$"), strings.Replace(h, "m=65536", "m=99999999", 1),
		strings.Replace(h, "p=2", "p=0", 1), h[:len(h)-4] + "AAAA", strings.Join(append(parts[:5], "!!"), "$")} {
		if checkPassword(bad, "correct horse") {
			t.Errorf("accepted %q", bad)
		}
	}
}
