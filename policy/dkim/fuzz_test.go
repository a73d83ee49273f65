package dkim

import (
	"bytes"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/mta"
)

// FuzzSign feeds arbitrary messages to the signer: it must never panic or
// fail, must leave the message itself untouched (signatures are only
// prepended), and a CRLF message it signs must verify with go-msgauth.
func FuzzSign(f *testing.F) {
	dir := f.TempDir()
	rec, err := Keygen(dir, "example.test", "s1", AlgoEd25519)
	if err != nil {
		f.Fatal(err)
	}
	kr, err := NewKeyring(dir, nil, "", nil)
	if err != nil {
		f.Fatal(err)
	}
	txt := rec[len(`s1._domainkey.example.test. IN TXT "`) : len(rec)-1]
	lookup := func(string) ([]string, error) { return []string{txt}, nil }
	f.Add([]byte(testMsg))
	f.Add([]byte("From: a@example.test\n\nLF only\n"))
	f.Add([]byte("From: a@example.test\r\nFrom: b@example.test\r\n\r\n"))
	f.Add([]byte("From: =?utf-8?q?x?= <a@EXAMPLE.test>\r\nSubject:\r\n folded\r\n\r\nx"))
	f.Add([]byte("From: a@example.test"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, signed, err := kr.Sign(msg)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		// Signatures are only prepended; a body with 8-bit octets is
		// first converted to 7-bit (SignMessage), when it converts.
		want := msg
		if signed && eightbit.BodyHas8bit(msg) {
			if c, err := eightbit.To7bit(msg); err == nil {
				if _, err := mta.ParseMessage(c); err == nil {
					want = c
				}
			}
		}
		if !bytes.HasSuffix(out, want) {
			t.Fatalf("message changed:\n%q\nwant a suffix\n%q", out, want)
		}
		if !signed || bytes.Contains(msg, []byte("\n")) && !bytes.Contains(msg, []byte("\r\n")) {
			return
		}
		if !wellFormedCRLF(msg) {
			return
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(out), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) == 0 || vs[0].Err != nil {
			var verr error
			if len(vs) > 0 {
				verr = vs[0].Err
			}
			t.Fatalf("signed message does not verify: %v %v\n%q", err, verr, out)
		}
	})
}

// wellFormedCRLF reports whether every line ends in CRLF, there is no bare
// CR, and the header block is terminated: the shape ingest hands policy.
func wellFormedCRLF(msg []byte) bool {
	if !bytes.Contains(msg, []byte("\r\n\r\n")) {
		return false
	}
	for i, c := range msg {
		switch c {
		case '\r':
			if i+1 >= len(msg) || msg[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || msg[i-1] != '\r' {
				return false
			}
		case 0:
			return false
		}
	}
	return true
}
