package dkim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"

	"github.com/petrel-mta/petrel/dns"

	"github.com/petrel-mta/petrel/internal/eightbit"
	"github.com/petrel-mta/petrel/internal/testnet"
)

const testMsg = "From: Alice <alice@example.test>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hi Bob,\r\n\r\nthis is   a test.  \r\n\r\n"

// lookupTXT asks the test DNS server through delivery's resolver, the
// way a receiver would.
func lookupTXT(t testing.TB, addr string) func(string) ([]string, error) {
	r, err := dns.NewResolver(addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(name string) ([]string, error) { return r.LookupTXT(context.Background(), name) }
}

func TestSignVerifies(t *testing.T) {
	pyv := testnet.PythonDKIM(t)
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tests := []struct {
		name   string
		algos  []string
		tamper func([]byte) []byte
		want   string // per signature, as python prints it
	}{
		{"rsa", []string{AlgoRSA}, nil, "ok"},
		{"ed25519", []string{AlgoEd25519}, nil, "ok"},
		{"dual", []string{AlgoRSA, AlgoEd25519}, nil, "ok ok"},
		{"body changed", []string{AlgoRSA}, func(m []byte) []byte { return bytes.Replace(m, []byte("Hi Bob"), []byte("Hi Eve"), 1) }, "fail"},
		{"subject changed", []string{AlgoEd25519}, func(m []byte) []byte { return bytes.Replace(m, []byte("Hello there"), []byte("Hello Eve"), 1) }, "fail"},
		{"second From added (oversigned)", []string{AlgoRSA}, func(m []byte) []byte {
			i := bytes.Index(m, []byte("\r\n\r\n"))
			return append(append(append([]byte{}, m[:i]...), "\r\nFrom: eve@evil.test"...), m[i:]...)
		}, "fail"},
		{"Cc added (oversigned)", []string{AlgoRSA, AlgoEd25519}, func(m []byte) []byte {
			i := bytes.Index(m, []byte("\r\n\r\n"))
			return append(append(append([]byte{}, m[:i]...), "\r\nCc: eve@evil.test"...), m[i:]...)
		}, "fail fail"},
		{"whitespace in headers (relaxed)", []string{AlgoRSA}, func(m []byte) []byte {
			return bytes.Replace(m, []byte("Subject: Hello there"), []byte("Subject:   Hello    there"), 1)
		}, "ok"},
	}
	// One key per algorithm (RSA generation is slow), installed per case.
	pems, recs := map[string][]byte{}, map[string]string{}
	for _, algo := range []string{AlgoRSA, AlgoEd25519} {
		kdir := t.TempDir()
		rec, err := Keygen(kdir, "base.example.test", "s", algo)
		if err != nil {
			t.Fatal(err)
		}
		if pems[algo], err = os.ReadFile(KeyPath(kdir, "base.example.test", "s")); err != nil {
			t.Fatal(err)
		}
		recs[algo] = rec
	}
	signedMsgs := make([][]byte, len(tests))
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			domain := fmt.Sprintf("d%d.example.test", i)
			for j, algo := range tc.algos {
				sel := fmt.Sprintf("s%d", j+1)
				if err := os.MkdirAll(filepath.Dir(KeyPath(dir, domain, sel)), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(KeyPath(dir, domain, sel), pems[algo], 0o600); err != nil {
					t.Fatal(err)
				}
				d.Add(strings.Replace(recs[algo], "s._domainkey.base.example.test.", RecordName(domain, sel), 1)) // the exact record keygen printed
			}
			kr, err := NewKeyring(dir, nil, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte(strings.Replace(testMsg, "alice@example.test", "alice@"+domain, 1))
			signed, ok, err := kr.Sign(msg)
			if err != nil || !ok {
				t.Fatalf("Sign = %v, %v", ok, err)
			}
			if !bytes.HasSuffix(signed, msg) {
				t.Fatal("signing changed the message itself")
			}
			if tc.tamper != nil {
				signed = tc.tamper(signed)
			}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookupTXT(t, d.Addr)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				if v.Err == nil {
					got = append(got, "ok")
				} else {
					got = append(got, "fail")
				}
				if v.Domain != domain {
					t.Errorf("d=%s, want %s", v.Domain, domain)
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("go-msgauth: %s, want %s", g, tc.want)
			}
			signedMsgs[i] = signed
		})
	}
	// The independent implementation, one process for every case.
	for i, g := range pyv(t, d.Addr, signedMsgs) {
		if g != tests[i].want {
			t.Errorf("%s: python3-dkim: %s, want %s\n%s", tests[i].name, g, tests[i].want, signedMsgs[i])
		}
	}
}

func TestHeaderKeys(t *testing.T) {
	kr, err := NewKeyring(t.TempDir(), nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = kr
	tests := []struct {
		name, hdr string
		counts    map[string]int
	}{
		{"plain", "From: a@b.test\r\nTo: c@d.test\r\nSubject: x\r\nMessage-ID: <1@b>\r\n\r\n",
			map[string]int{"From": 2, "To": 2, "Subject": 2, "Message-ID": 2, "Cc": 1, "List-Unsubscribe": 1, "References": 0}},
		{"two To, references", "From: a@b.test\r\nTo: c@d.test\r\nTo: e@f.test\r\nReferences: <x@y>\r\n\r\n",
			map[string]int{"From": 2, "To": 3, "References": 1, "Feedback-ID": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseHeader([]byte(tc.hdr))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, k := range HeaderKeys(m) {
				got[k]++
			}
			for k, want := range tc.counts {
				if got[k] != want {
					t.Errorf("%s listed %d times, want %d (h=%v)", k, got[k], want, HeaderKeys(m))
				}
			}
		})
	}
}

func TestKeyringChoosesDomain(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"example.test", "sub.other.test", "default.test"} {
		if _, err := Keygen(dir, d, "s1", AlgoEd25519); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := NewKeyring(dir, nil, "default.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	kr0, _ := NewKeyring(dir, nil, "", nil)
	tests := []struct {
		from, want, wantNoDefault string
	}{
		{"example.test", "example.test", "example.test"},
		{"News.Example.TEST", "example.test", "example.test"},
		{"other.test", "default.test", ""},
		{"a.sub.other.test", "sub.other.test", "sub.other.test"},
		{"unrelated.test", "default.test", ""},
	}
	for _, tc := range tests {
		got, got0 := "", ""
		if ks := kr.KeysFor(tc.from); len(ks) > 0 {
			got = ks[0].Domain
		}
		if ks := kr0.KeysFor(tc.from); len(ks) > 0 {
			got0 = ks[0].Domain
		}
		if got != tc.want || got0 != tc.wantNoDefault {
			t.Errorf("KeysFor(%s) = %q/%q, want %q/%q", tc.from, got, got0, tc.want, tc.wantNoDefault)
		}
	}
	// No key: unchanged, unsigned.
	msg := []byte(strings.Replace(testMsg, "example.test", "unrelated.test", 1))
	out, ok, err := kr0.Sign(msg)
	if err != nil || ok || !bytes.Equal(out, msg) {
		t.Fatalf("unsigned domain: ok=%v err=%v", ok, err)
	}
	// Unparseable From: unchanged.
	out, ok, err = kr.Sign([]byte("From: <<<\r\n\r\nbody"))
	if err != nil || ok || string(out) != "From: <<<\r\n\r\nbody" {
		t.Fatalf("bad From: ok=%v err=%v", ok, err)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		domain, sel, algo string
		ok                bool
		prefix            string
	}{
		{"example.test", "rsa1", "rsa", true, `rsa1._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=`},
		{"Example.Test.", "ed1", "ed25519", true, `ed1._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=`},
		{"example.test", "rsa1", "rsa", false, ""}, // exists: never overwrite a key
		{"../etc", "x", "rsa", false, ""},
		{"example.test", "../x", "rsa", false, ""},
		{"example.test", "s", "dsa", false, ""},
	}
	for _, tc := range tests {
		rec, err := Keygen(dir, tc.domain, tc.sel, tc.algo)
		if (err == nil) != tc.ok {
			t.Errorf("Keygen(%s,%s,%s) err=%v", tc.domain, tc.sel, tc.algo, err)
			continue
		}
		if !tc.ok {
			continue
		}
		if !strings.HasPrefix(rec, tc.prefix) {
			t.Errorf("record %q, want prefix %q", rec, tc.prefix)
		}
		// Every quoted string at most 255 bytes, and the record parses.
		rr, err := mdns.NewRR(rec)
		if err != nil {
			t.Fatalf("record does not parse: %v", err)
		}
		for _, s := range rr.(*mdns.TXT).Txt {
			if len(s) > 255 {
				t.Errorf("TXT string of %d bytes", len(s))
			}
		}
		p := KeyPath(dir, tc.domain, tc.sel)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("key file %s: mode %v", p, st.Mode())
		}
		_, algo, err := LoadKey(p)
		if err != nil || algo != tc.algo {
			t.Errorf("LoadKey = %s, %v", algo, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "example.test")); err != nil {
		t.Fatal(err)
	}
}

func benchmarkSign(b *testing.B, algo string) {
	dir := b.TempDir()
	if _, err := Keygen(dir, "example.test", "s1", algo); err != nil {
		b.Fatal(err)
	}
	kr, err := NewKeyring(dir, nil, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 4096/58)
	msg := []byte(testMsg + body)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, ok, err := kr.Sign(msg); err != nil || !ok {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignRSA2048 signs a ~4 KiB message with an RSA-2048 key.
func BenchmarkSignRSA2048(b *testing.B) { benchmarkSign(b, AlgoRSA) }

// BenchmarkSignEd25519 signs a ~4 KiB message with an Ed25519 key.
func BenchmarkSignEd25519(b *testing.B) { benchmarkSign(b, AlgoEd25519) }

// TestSignEightBit: an 8-bit message is converted to 7-bit before it is
// signed (RFC 6376 section 5.3), so the signature holds at a next hop
// without 8BITMIME where delivery would otherwise have to convert it after
// signing; a message Sign does not sign keeps its 8-bit body.
func TestSignEightBit(t *testing.T) {
	pyv := testnet.PythonDKIM(t)
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dir := t.TempDir()
	rec, err := Keygen(dir, "eight.example.test", "s1", AlgoEd25519)
	if err != nil {
		t.Fatal(err)
	}
	d.Add(rec)
	kr, err := NewKeyring(dir, nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	const text = "Grüße, café – 10 €\r\n"
	msg := append([]byte(strings.Replace(testMsg[:strings.Index(testMsg, "\r\n\r\n")], "alice@example.test", "alice@eight.example.test", 1)+
		"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"), text...)
	signed, ok, err := kr.Sign(msg)
	if err != nil || !ok {
		t.Fatalf("Sign = %v, %v", ok, err)
	}
	if eightbit.BodyHas8bit(signed) {
		t.Fatalf("signed body is still 8-bit:\n%s", signed)
	}
	if !bytes.Contains(signed, []byte("Content-Transfer-Encoding: quoted-printable\r\n")) {
		t.Fatalf("no quoted-printable:\n%s", signed)
	}
	if _, err := eightbit.To7bit(signed); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(signed, []byte("\r\n\r\n"))
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(signed[i+4:])))
	if err != nil || string(dec) != text {
		t.Fatalf("decoded body %q (%v), want %q", dec, err, text)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookupTXT(t, d.Addr)})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("go-msgauth verify: %v %+v", err, vs)
	}
	if got := pyv(t, d.Addr, [][]byte{signed}); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("python3-dkim: %v\n%s", got, signed)
	}
	// Not signed (no key for the From domain): left 8-bit.
	other := bytes.Replace(msg, []byte("eight.example.test"), []byte("nokey.test"), 1)
	out, ok, err := kr.Sign(other)
	if err != nil || ok || !bytes.Equal(out, other) {
		t.Fatalf("unsigned message changed: ok=%v err=%v", ok, err)
	}
}
