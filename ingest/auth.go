package ingest

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// errBadPassword is returned by checkPassword for any mismatch.
var errBadPassword = errors.New("password mismatch")

// checkPassword verifies password against a bcrypt ("$2a$", "$2b$",
// "$2y$") or argon2id PHC hash ("$argon2id$v=19$m=65536,t=3,p=4$salt$key",
// unpadded standard base64).
func checkPassword(hash, password string) error {
	if strings.HasPrefix(hash, "$argon2id$") {
		return checkArgon2id(hash, password)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		return fmt.Errorf("bcrypt: %w", errBadPassword)
	}
	return nil
}

func checkArgon2id(hash, password string) error {
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[2] != "v=19" {
		return fmt.Errorf("argon2id: unsupported hash format: %w", errBadPassword)
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || t == 0 || p == 0 {
		return fmt.Errorf("argon2id: bad parameters %q: %w", parts[3], errBadPassword)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return fmt.Errorf("argon2id: bad salt or key encoding: %w", errBadPassword)
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(key)))
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return fmt.Errorf("argon2id: %w", errBadPassword)
	}
	return nil
}

// loginServer is the server side of the (obsolete but ubiquitous) LOGIN
// SASL mechanism, which emersion/go-sasl only implements as a client.
type loginServer struct {
	step     int
	username string
	check    func(username, password string) error
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the username
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}

var _ sasl.Server = (*loginServer)(nil)
