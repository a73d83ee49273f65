package policy

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/eightbit"
)

// FuzzPrepare: any message bytes get through Prepare without a panic or
// error, and the original bytes survive in order (Prepare only inserts
// header fields).
func FuzzPrepare(f *testing.F) {
	cfg := config.Default()
	cfg.DataDir = f.TempDir()
	cfg.DNS.Resolver = "127.0.0.1:1"
	cfg.Sending.UnsubscribeURL = "https://mail.shop.test"
	cfg.Bounce.Domain = "bounce.shop.test"
	e, err := New(Options{Config: cfg, Registry: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	if _, err := e.AddDomain(context.Background(), "shop.test", "ed25519", false); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(msg))
	f.Add([]byte("Received: x\r\n y\r\n\r\n"))
	f.Add([]byte("Received: x\n\tfolded\nFrom: a@shop.test\n\nbody"))
	f.Add([]byte(" leading continuation\r\nFrom: a@shop.test\r\n\r\n"))
	f.Add([]byte("list-unsubscribe: <x>\r\nFrom: a@shop.test\r\n\r\n"))
	f.Fuzz(func(t *testing.T, m []byte) {
		out, err := e.Prepare(context.Background(), "marketing", []string{"a@example.org"}, m)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		// A body with 8-bit octets is converted to 7-bit when it is
		// signed (dkim.SignMessage): then the converted message's bytes
		// are the ones that must all be there.
		want := m
		sig := []byte("DKIM-Signature:")
		if signed := bytes.Count(out, sig) > bytes.Count(m, sig); signed && eightbit.BodyHas8bit(m) {
			if c, err := eightbit.To7bit(m); err == nil {
				want = c
			}
		}
		if !isSubsequence(want, out) {
			t.Fatalf("original bytes lost:\n%q\n%q", want, out)
		}
	})
}

// isSubsequence reports whether a's bytes appear in b in order.
func isSubsequence(a, b []byte) bool {
	for _, c := range a {
		i := bytes.IndexByte(b, c)
		if i < 0 {
			return false
		}
		b = b[i+1:]
	}
	return true
}
