// Package dkim owns Petrel's DKIM keys and signing: RSA-2048 and Ed25519
// keys per signing domain and selector (PEM files, by convention under
// <data_dir>/dkim/<domain>/<selector>.key), the DNS TXT records that
// publish them, and signing a message once at ingest with every key of its
// signing domain (dual RSA + Ed25519 signing when both exist). Signing
// itself is emersion/go-msgauth's; this package chooses keys and headers.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Algorithms.
const (
	AlgoRSA     = "rsa"
	AlgoEd25519 = "ed25519"
)

// RSABits is the size of generated RSA keys.
const RSABits = 2048

var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// ValidDomain reports whether d is a plausible DNS domain name (LDH labels,
// at least two of them). It guards file paths built from domain names.
func ValidDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidSelector reports whether s is a usable selector (one or more LDH
// labels).
func ValidSelector(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return s != ""
}

// KeyPath is where Keygen writes the key of domain and selector under dir.
func KeyPath(dir, domain, selector string) string {
	return filepath.Join(dir, strings.ToLower(strings.TrimSuffix(domain, ".")), selector+".key")
}

// Keygen creates a new key (algo "rsa" or "ed25519"; "" means rsa) for
// domain and selector, writes it as a PKCS#8 PEM file with mode 0600 at
// KeyPath(dir, domain, selector), refusing to overwrite an existing key,
// and returns the DNS record to publish.
func Keygen(dir, domain, selector, algo string) (record string, err error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !ValidDomain(domain) {
		return "", fmt.Errorf("dkim: invalid domain %q", domain)
	}
	if !ValidSelector(selector) {
		return "", fmt.Errorf("dkim: invalid selector %q", selector)
	}
	var key crypto.Signer
	switch algo {
	case "", AlgoRSA:
		key, err = rsa.GenerateKey(rand.Reader, RSABits)
	case AlgoEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return "", fmt.Errorf("dkim: algorithm %q is not rsa or ed25519", algo)
	}
	if err != nil {
		return "", fmt.Errorf("dkim: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("dkim: encode key: %w", err)
	}
	path := KeyPath(dir, domain, selector)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("dkim: write key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return "", fmt.Errorf("dkim: write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("dkim: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("dkim: write key: %w", err)
	}
	return Record(domain, selector, key.Public())
}

// LoadKey reads a PEM private key (PKCS#8, PKCS#1 RSA) and returns it with
// its algorithm name.
func LoadKey(path string) (crypto.Signer, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("dkim: %w", err)
	}
	return ParseKey(data)
}

// ParseKey decodes a PEM private key (PKCS#8, PKCS#1 RSA).
func ParseKey(data []byte) (crypto.Signer, string, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, "", errors.New("dkim: no PEM block in key")
	}
	var k any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, "", fmt.Errorf("dkim: parse key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, "", fmt.Errorf("dkim: RSA key of %d bits is too short", k.N.BitLen())
		}
		return k, AlgoRSA, nil
	case ed25519.PrivateKey:
		return k, AlgoEd25519, nil
	default:
		return nil, "", fmt.Errorf("dkim: unsupported key type %T", k)
	}
}

// TXTValue is the DKIM key record text for pub: "v=DKIM1; k=rsa; p=..."
// (RSA: SubjectPublicKeyInfo, RFC 6376; Ed25519: the raw 32-byte key,
// RFC 8463).
func TXTValue(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return "", fmt.Errorf("dkim: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p), nil
	default:
		return "", fmt.Errorf("dkim: unsupported public key type %T", pub)
	}
}

// RecordName is the owner name of a DKIM key record.
func RecordName(domain, selector string) string {
	return selector + "._domainkey." + strings.ToLower(strings.TrimSuffix(domain, ".")) + "."
}

// Record is the zone-file line publishing pub:
// `<selector>._domainkey.<domain>. IN TXT "v=DKIM1; k=rsa; p=..."`, the
// text split into quoted strings of at most 255 bytes.
func Record(domain, selector string, pub crypto.PublicKey) (string, error) {
	v, err := TXTValue(pub)
	if err != nil {
		return "", err
	}
	return RecordName(domain, selector) + " IN TXT " + QuoteTXT(v), nil
}

// QuoteTXT splits s into zone-file character-strings of at most 255 bytes.
func QuoteTXT(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}
