// Package account owns who may use Petrel's HTTP surface besides the
// configured API keys: dashboard users with a role (owner, marketer,
// viewer) and an argon2id password hash, their login sessions, the login
// rate limit, and API keys managed in the database (name, role, stream
// and the sending domains they may use; configured [[http.api_keys]]
// keep working beside them; a database key's stream and sending domains
// are limits ingest enforces on every message it submits, carried there
// by admin's auth as httpapi.Key). It also owns the access rule: which role may
// call which method on which API path (Allowed).
//
// Its tables live in the ESP SQL database (the one audience.Store opens:
// SQLite or PostgreSQL). Secrets are never stored: a session id and an
// API key are random 256-bit values of which only the SHA-256 digest is
// kept, so a copy of the database opens no session and no key. A
// session's CSRF token is derived from its id (HMAC), so it needs no
// storage and dies with the session.
package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/internal/sqlq"
)

// Role is what a user or a database key may do.
type Role string

// Roles, from most to least powerful.
const (
	// Owner may do everything, including users, keys and operations.
	Owner Role = "owner"
	// Marketer may manage audiences, templates, campaigns and domains,
	// and read the rest, but not users, keys or operations.
	Marketer Role = "marketer"
	// Viewer may only read.
	Viewer Role = "viewer"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == Owner || r == Marketer || r == Viewer }

// Errors callers tell apart (HTTP: 401, 404, 409, 400, 429).
var (
	ErrBadCredentials = errors.New("account: wrong email or password")
	ErrNotFound       = errors.New("account: not found")
	ErrExists         = errors.New("account: already exists")
	ErrInvalid        = errors.New("account: invalid")
	ErrRateLimited    = errors.New("account: too many failed logins, try again later")
	ErrLastOwner      = errors.New("account: the last owner cannot be removed or demoted")
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// SessionTTL is how long a session lives without use (default 12h);
	// SessionMax bounds its life however much it is used (default 7 days).
	SessionTTL, SessionMax time.Duration
	// LoginFailures failed logins per email or per client within
	// LoginWindow lock that email or client out for the rest of the
	// window (defaults 5 and 15 minutes).
	LoginFailures int
	LoginWindow   time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store keeps users, sessions and API keys. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	pg    bool
	opts  Options
	limit *limiter

	dummyOnce sync.Once
	dummy     string // checked against when the email is unknown
}

// User is a dashboard user (never with its password hash).
type User struct {
	ID      int64     `json:"id"`
	Email   string    `json:"email"`
	Name    string    `json:"name,omitempty"`
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
}

// Session is an authenticated login.
type Session struct {
	User    User      `json:"user"`
	Expires time.Time `json:"expires"`
	// CSRF is the token unsafe cookie-authenticated requests must carry.
	CSRF string `json:"csrf"`
}

// Key is an API key kept in the database (the secret is shown once, at
// creation, and stored only as its digest).
type Key struct {
	ID      int64     `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Stream  string    `json:"stream"`
	Domains []string  `json:"domains"`
	Prefix  string    `json:"prefix"`
	Created time.Time `json:"created"`
}

// Limits is k as the limits ingest enforces (httpapi.Key): its only
// stream and its sending domains.
func (k Key) Limits() httpapi.Key {
	return httpapi.Key{Name: k.Name, Stream: k.Stream, StreamOnly: true, Domains: k.Domains}
}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS account_users (
		id       %ID%,
		email    TEXT NOT NULL UNIQUE,
		name     TEXT NOT NULL DEFAULT '',
		role     TEXT NOT NULL,
		password TEXT NOT NULL,
		created  BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS account_sessions (
		hash    TEXT PRIMARY KEY,
		user_id BIGINT NOT NULL,
		created BIGINT NOT NULL,
		seen    BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS account_sessions_user ON account_sessions (user_id)`,
	`CREATE TABLE IF NOT EXISTS account_keys (
		id      %ID%,
		hash    TEXT NOT NULL UNIQUE,
		prefix  TEXT NOT NULL,
		name    TEXT NOT NULL UNIQUE,
		role    TEXT NOT NULL,
		stream  TEXT NOT NULL,
		domains TEXT NOT NULL,
		created BIGINT NOT NULL
	)`,
}

// Open creates the account tables in db (the ESP database; pg says it is
// PostgreSQL) if they do not exist.
func Open(ctx context.Context, db *sql.DB, pg bool, opts Options) (*Store, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.SessionMax <= 0 {
		opts.SessionMax = 7 * 24 * time.Hour
	}
	if opts.LoginFailures <= 0 {
		opts.LoginFailures = 5
	}
	if opts.LoginWindow <= 0 {
		opts.LoginWindow = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if pg {
		id = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	}
	for _, st := range schema {
		if _, err := db.ExecContext(ctx, strings.ReplaceAll(st, "%ID%", id)); err != nil {
			return nil, fmt.Errorf("account: schema: %w", err)
		}
	}
	return &Store{db: db, pg: pg, opts: opts, limit: newLimiter(opts.LoginFailures, opts.LoginWindow, opts.Now)}, nil
}

// q rewrites ? placeholders as $n on PostgreSQL.
func (s *Store) q(query string) string { return sqlq.Rebind(s.pg, query) }

func (s *Store) now() time.Time { return s.opts.Now() }

// normEmail validates and lower-cases an email address.
func normEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email {
		return "", fmt.Errorf("%w: email %q", ErrInvalid, email)
	}
	return strings.ToLower(email), nil
}

// MinPasswordLen is the shortest password AddUser and SetPassword take.
const MinPasswordLen = 10

// AddUser creates a user with the given role and password.
func (s *Store) AddUser(ctx context.Context, email, name, password string, role Role) (User, error) {
	email, err := normEmail(email)
	if err != nil {
		return User{}, err
	}
	if !role.Valid() {
		return User{}, fmt.Errorf("%w: role %q (owner, marketer or viewer)", ErrInvalid, role)
	}
	if len(password) < MinPasswordLen {
		return User{}, fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPasswordLen)
	}
	now := s.now()
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO account_users (email, name, role, password, created) VALUES (?, ?, ?, ?, ?)`),
		email, name, string(role), hashPassword(password), now.Unix())
	if err != nil {
		if isUnique(err) {
			return User{}, fmt.Errorf("%w: user %s", ErrExists, email)
		}
		return User{}, fmt.Errorf("account: add user: %w", err)
	}
	return s.userBy(ctx, "email", email)
}

func isUnique(err error) bool {
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "unique") || strings.Contains(m, "duplicate key")
}

const userCols = `id, email, name, role, created`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var role string
	var created int64
	if err := row.Scan(&u.ID, &u.Email, &u.Name, &role, &created); err != nil {
		return User{}, err
	}
	u.Role, u.Created = Role(role), time.Unix(created, 0).UTC()
	return u, nil
}

func (s *Store) userBy(ctx context.Context, col string, v any) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM account_users WHERE `+col+` = ?`), v))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("account: user: %w", err)
	}
	return u, nil
}

// User returns the user with id.
func (s *Store) User(ctx context.Context, id int64) (User, error) { return s.userBy(ctx, "id", id) }

// Users lists every user by email.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM account_users ORDER BY email`)
	if err != nil {
		return nil, fmt.Errorf("account: users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("account: users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountUsers returns how many users exist (petreld tells how to create
// the first one when there are none).
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM account_users`).Scan(&n)
	return n, err
}

func (s *Store) owners(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM account_users WHERE role = ?`), string(Owner)).Scan(&n)
	return n, err
}

// SetRole changes a user's role; the last owner keeps theirs.
func (s *Store) SetRole(ctx context.Context, id int64, role Role) error {
	if !role.Valid() {
		return fmt.Errorf("%w: role %q", ErrInvalid, role)
	}
	u, err := s.User(ctx, id)
	if err != nil {
		return err
	}
	if u.Role == Owner && role != Owner {
		if n, err := s.owners(ctx); err != nil || n <= 1 {
			return errors.Join(ErrLastOwner, err)
		}
	}
	_, err = s.db.ExecContext(ctx, s.q(`UPDATE account_users SET role = ? WHERE id = ?`), string(role), id)
	return err
}

// SetPassword replaces a user's password and ends their sessions.
func (s *Store) SetPassword(ctx context.Context, id int64, password string) error {
	if len(password) < MinPasswordLen {
		return fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPasswordLen)
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE account_users SET password = ? WHERE id = ?`), hashPassword(password), id)
	if err != nil {
		return fmt.Errorf("account: set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	_, err = s.db.ExecContext(ctx, s.q(`DELETE FROM account_sessions WHERE user_id = ?`), id)
	return err
}

// DeleteUser removes a user and their sessions; the last owner stays.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	u, err := s.User(ctx, id)
	if err != nil {
		return err
	}
	if u.Role == Owner {
		if n, err := s.owners(ctx); err != nil || n <= 1 {
			return errors.Join(ErrLastOwner, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM account_sessions WHERE user_id = ?`), id); err != nil {
		return fmt.Errorf("account: delete user: %w", err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`DELETE FROM account_users WHERE id = ?`), id)
	return err
}

// Login checks email and password (client names the caller for the rate
// limit: its IP) and opens a new session, returning its id, which is the
// cookie value. Every login makes a fresh random id: a session id known
// before the login (fixation) never becomes authenticated.
func (s *Store) Login(ctx context.Context, email, password, client string) (id string, sess Session, err error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if !s.limit.allow("e:"+email) || !s.limit.allow("c:"+client) {
		return "", Session{}, ErrRateLimited
	}
	var uid int64
	var hash string
	err = s.db.QueryRowContext(ctx, s.q(`SELECT id, password FROM account_users WHERE email = ?`), email).Scan(&uid, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", Session{}, fmt.Errorf("account: login: %w", err)
	}
	if err != nil {
		s.dummyOnce.Do(func() { s.dummy = hashPassword("petrel-no-such-user") })
		hash = s.dummy // the same work for an unknown email
	}
	if !checkPassword(hash, password) || uid == 0 {
		s.limit.fail("e:" + email)
		s.limit.fail("c:" + client)
		return "", Session{}, ErrBadCredentials
	}
	s.limit.reset("e:" + email)
	id = randomToken()
	now := s.now().Unix()
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO account_sessions (hash, user_id, created, seen) VALUES (?, ?, ?, ?)`),
		digest(id), uid, now, now); err != nil {
		return "", Session{}, fmt.Errorf("account: login: %w", err)
	}
	sess, err = s.Session(ctx, id)
	return id, sess, err
}

// Session returns the live session with id (ErrNotFound when there is
// none or it expired), refreshing its idle timer.
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	if id == "" {
		return Session{}, ErrNotFound
	}
	h := digest(id)
	var uid, created, seen int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT user_id, created, seen FROM account_sessions WHERE hash = ?`), h).Scan(&uid, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("account: session: %w", err)
	}
	now := s.now()
	idleEnd := time.Unix(seen, 0).Add(s.opts.SessionTTL)
	maxEnd := time.Unix(created, 0).Add(s.opts.SessionMax)
	if now.After(idleEnd) || now.After(maxEnd) {
		_, _ = s.db.ExecContext(ctx, s.q(`DELETE FROM account_sessions WHERE hash = ?`), h)
		return Session{}, ErrNotFound
	}
	u, err := s.User(ctx, uid)
	if err != nil {
		return Session{}, err
	}
	if now.Unix()-seen >= 60 { // refresh at most once a minute
		_, _ = s.db.ExecContext(ctx, s.q(`UPDATE account_sessions SET seen = ? WHERE hash = ?`), now.Unix(), h)
		seen = now.Unix()
	}
	exp := time.Unix(seen, 0).Add(s.opts.SessionTTL)
	if exp.After(maxEnd) {
		exp = maxEnd
	}
	return Session{User: u, Expires: exp.UTC(), CSRF: CSRFToken(id)}, nil
}

// Logout ends the session with id (no error when there is none).
func (s *Store) Logout(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM account_sessions WHERE hash = ?`), digest(id))
	return err
}

// CSRFToken is the CSRF token of the session with id: an HMAC of a fixed
// label under the id, so only a holder of the session can know it.
func CSRFToken(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("petrel csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether token is the CSRF token of session id, in
// constant time.
func CheckCSRF(id, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(CSRFToken(id)), []byte(token)) == 1
}

// KeyPrefix starts every database API key, so a leaked one is
// recognisable (and told apart from configured keys).
const KeyPrefix = "ptk_"

// CreateKey creates an API key and returns its secret, shown only now.
func (s *Store) CreateKey(ctx context.Context, name string, role Role, stream string, domains []string) (string, Key, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", Key{}, fmt.Errorf("%w: key name must be 1 to 100 characters", ErrInvalid)
	}
	if !role.Valid() {
		return "", Key{}, fmt.Errorf("%w: role %q", ErrInvalid, role)
	}
	if stream = strings.ToLower(strings.TrimSpace(stream)); stream == "" {
		stream = "transactional"
	}
	if !validStream(stream) {
		return "", Key{}, fmt.Errorf("%w: stream %q (a-z, 0-9, then also - _ .; at most 64)", ErrInvalid, stream)
	}
	clean := []string{}
	for _, d := range domains {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			if strings.ContainsAny(d, " @/") {
				return "", Key{}, fmt.Errorf("%w: domain %q", ErrInvalid, d)
			}
			clean = append(clean, d)
		}
	}
	secret := KeyPrefix + randomToken()
	dj, _ := json.Marshal(clean)
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO account_keys (hash, prefix, name, role, stream, domains, created) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		digest(secret), secret[:len(KeyPrefix)+6], name, string(role), stream, string(dj), s.now().Unix())
	if err != nil {
		if isUnique(err) {
			return "", Key{}, fmt.Errorf("%w: key %q", ErrExists, name)
		}
		return "", Key{}, fmt.Errorf("account: create key: %w", err)
	}
	k, err := s.keyBy(ctx, "hash", digest(secret))
	return secret, k, err
}

const keyCols = `id, name, role, stream, domains, prefix, created`

func scanKey(row interface{ Scan(...any) error }) (Key, error) {
	var k Key
	var role, domains string
	var created int64
	if err := row.Scan(&k.ID, &k.Name, &role, &k.Stream, &domains, &k.Prefix, &created); err != nil {
		return Key{}, err
	}
	k.Role, k.Created = Role(role), time.Unix(created, 0).UTC()
	if err := json.Unmarshal([]byte(domains), &k.Domains); err != nil {
		return Key{}, fmt.Errorf("account: key %d domains: %w", k.ID, err)
	}
	return k, nil
}

func (s *Store) keyBy(ctx context.Context, col string, v any) (Key, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` FROM account_keys WHERE `+col+` = ?`), v))
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, ErrNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("account: key: %w", err)
	}
	return k, nil
}

// LookupKey finds the database key whose secret is token.
func (s *Store) LookupKey(ctx context.Context, token string) (Key, error) {
	if !strings.HasPrefix(token, KeyPrefix) {
		return Key{}, ErrNotFound
	}
	return s.keyBy(ctx, "hash", digest(token))
}

// Keys lists the database keys by name.
func (s *Store) Keys(ctx context.Context) ([]Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyCols+` FROM account_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("account: keys: %w", err)
	}
	defer rows.Close()
	out := []Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteKey revokes the key with id.
func (s *Store) DeleteKey(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM account_keys WHERE id = ?`), id)
	if err != nil {
		return fmt.Errorf("account: delete key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// digest is the stored form of a secret token.
func digest(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// argon2id parameters (RFC 9106's second recommended option, with 64 MiB).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// hashPassword returns the PHC string of password under a fresh salt.
func hashPassword(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	k := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
}

// checkPassword verifies password against a PHC argon2id string, with
// the parameters it names.
func checkPassword(phc, password string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// validStream is ingest's rule for a stream name: a-z or 0-9 first, then
// also '-', '_' or '.', at most 64 bytes (a key with another name could
// send nothing).
func validStream(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')) {
			return false
		}
	}
	return true
}
