package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy"
)

// policyServer runs policy's real API over loopback HTTP, checking
// domains against a loopback DNS server.
func policyServer(t *testing.T, mod ...func(*config.Config)) (url string, dns *testnet.DNS) {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Hostname = "mx.ctl.test"
	cfg.DNS.Resolver = d.Addr
	cfg.Sending.SPFIPs = []string{"192.0.2.7"}
	for _, m := range mod {
		m(cfg)
	}
	e, err := policy.New(policy.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	srv := newTestServer(t, e.Handler())
	return srv, d
}

func ctl(t *testing.T, url string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"-url", url}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestDomainCommands(t *testing.T) {
	url, d := policyServer(t)
	out, errs, code := ctl(t, url, "domain", "add", "Brand.test", "-dual")
	if code != 0 {
		t.Fatalf("domain add: %d %s", code, errs)
	}
	var zone []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " IN ") {
			zone = append(zone, l)
		}
	}
	// SPF, DKIM rsa + ed25519, MX, DMARC.
	if len(zone) != 5 || !strings.Contains(out, "v=spf1 ip4:192.0.2.7 ~all") || !strings.Contains(out, "bounce.brand.test. IN MX 10 mx.ctl.test.") {
		t.Fatalf("domain add printed:\n%s", out)
	}
	tests := []struct {
		publish []string // record kinds (line prefixes) to add before the check
		want    string
	}{
		{nil, "brand.test: unverified"},
		{[]string{"brand.test.", "s1._domainkey", "e1._domainkey", "bounce."}, "brand.test: usable"},
		{[]string{"_dmarc."}, "brand.test: verified"},
	}
	for _, tc := range tests {
		for _, p := range tc.publish {
			for _, z := range zone {
				if strings.HasPrefix(z, p) {
					d.Add(z)
				}
			}
		}
		out, errs, code := ctl(t, url, "domain", "check", "brand.test")
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Fatalf("domain check: %d %s\n%s\nwant %q", code, errs, out, tc.want)
		}
	}
	out, _, _ = ctl(t, url, "domain", "list")
	if !strings.Contains(out, "brand.test") || !strings.Contains(out, "verified") {
		t.Fatalf("domain list:\n%s", out)
	}
	if _, errs, code := ctl(t, url, "domain", "check", "nosuch.test"); code == 0 || !strings.Contains(errs, "404") {
		t.Fatalf("check of unknown domain: %d %s", code, errs)
	}
}

func TestSuppressionCommands(t *testing.T) {
	url, _ := policyServer(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "in.csv")
	os.WriteFile(csv, []byte("x@example.com,marketing,unsubscribe\ny@example.com\n"), 0o600)
	steps := []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"suppression", "add", "A@Example.com", "-stream", "marketing", "-reason", "complaint"}, 0, "suppressed A@example.com in stream marketing (complaint)"},
		{[]string{"suppression", "add", "not-an-address"}, 1, "400"},
		{[]string{"suppression", "import", csv, "-source", "crm"}, 0, "imported 2"},
		{[]string{"suppression", "list", "-stream", "marketing"}, 0, "2 suppressed"},
		{[]string{"suppression", "list"}, 0, "3 suppressed"},
		{[]string{"suppression", "remove", "a@example.com", "-stream", "marketing"}, 0, "removed A@example.com"},
		{[]string{"suppression", "remove", "a@example.com", "-stream", "marketing"}, 1, "a@example.com is not suppressed in stream marketing"},
		{[]string{"suppression", "export", "-stream", "marketing"}, 0, "x@example.com,marketing,unsubscribe,crm,"},
		{[]string{"suppression", "remove", "x@example.com"}, 1, `x@example.com is not suppressed in the global list (stream "*"`},
		{[]string{"suppression", "remove", "x@example.com", "-stream", "marketing"}, 0, "removed x@example.com from stream marketing"},
	}
	for _, s := range steps {
		out, errs, code := ctl(t, url, s.args...)
		if code != s.code || !strings.Contains(out+errs, s.has) {
			t.Errorf("%v: %d\n%s%s\nwant %d and %q", s.args, code, out, errs, s.code, s.has)
		}
	}
}

func TestDKIMKeygenCommand(t *testing.T) {
	dir := t.TempDir()
	out, errs, code := ctl(t, "http://127.0.0.1:1", "dkim", "keygen", "example.test", "s2", "-algo", "ed25519", "-data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, `s2._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=`) {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "dkim", "example.test", "s2.key")); err != nil {
		t.Fatal(err)
	}
	if _, _, code := ctl(t, "http://127.0.0.1:1", "dkim", "keygen", "example.test", "s2", "-data-dir", dir); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	if _, _, code := ctl(t, "http://127.0.0.1:1", "dkim", "keygen", "example.test", "s3"); code == 0 {
		t.Fatal("keygen without -data-dir accepted")
	}
}

func newTestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
