package testnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PebbleVersion is the Let's Encrypt Pebble test CA the ACME tests run.
const PebbleVersion = "v2.10.3"

// Pebble is a running Pebble ACME test CA on loopback.
type Pebble struct {
	// DirectoryURL is the ACME directory ("https://127.0.0.1:port/dir").
	DirectoryURL string
	// Client trusts Pebble's own HTTPS certificate (for the ACME client);
	// CAFile is that CA's PEM file.
	Client *http.Client
	CAFile string
	mgmt   string
}

// StartPebble builds Pebble (go install from the module proxy/cache
// into a temporary GOBIN) and runs it with its validations resolved by
// dnsAddr (a testnet DNS server) and tls-alpn-01 / http-01 challenges
// sent to tlsPort / httpPort of the names' addresses. It stops at the end
// of the test. Without a Go toolchain or module source it SkipOrFails.
func StartPebble(t testing.TB, dnsAddr string, tlsPort, httpPort int) *Pebble {
	t.Helper()
	bin := t.TempDir()
	install := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+PebbleVersion)
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod")
	install.Dir = bin
	if out, err := install.CombinedOutput(); err != nil {
		SkipOrFail(t, "build pebble %s: %v %s", PebbleVersion, err, out)
	}
	modDir, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(strings.TrimSpace(string(modDir)), "github.com/letsencrypt/pebble/v2@"+PebbleVersion)
	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":             filepath.Join(src, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort":                httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(bin, "pebble.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pebble"), "-config", cfgPath, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble log:\n%s", log.String())
		}
	})
	caFile := filepath.Join(src, "test/certs/pebble.minica.pem")
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	p := &Pebble{CAFile: caFile, DirectoryURL: fmt.Sprintf("https://127.0.0.1:%d/dir", ports[0]), mgmt: fmt.Sprintf("https://127.0.0.1:%d", ports[1]),
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not listening: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// Roots returns the CA certificates Pebble issues under (its current
// root, from the management API), for clients that verify issued
// certificates.
func (p *Pebble) Roots(ctx context.Context) (*x509.CertPool, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", p.mgmt+"/roots/0", nil)
	resp, err := p.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pebble roots: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pebble roots: no PEM in %q", b)
	}
	return pool, nil
}
