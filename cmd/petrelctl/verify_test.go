package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/verify"
)

// verifyServer runs verify's real API against a loopback DNS server and
// one MX host that knows alice and admin.
func verifyServer(t *testing.T) string {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	mx, err := testnet.StartMX(testnet.MXOptions{Script: testnet.MXScript{OnRcpt: func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "alice@") || strings.HasPrefix(rcpt, "admin@") {
			return nil
		}
		return testnet.Reply(550, "5.1.1", "no such user")
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mx.Close() })
	host, port, _ := strings.Cut(mx.Addr, ":")
	d.Add("mx.ok.test. 60 IN A "+host, "ok.test. 60 IN MX 10 mx.ok.test.")
	var p int
	fmt.Sscan(port, &p)
	log := slog.New(slog.DiscardHandler)
	c := config.Default().Verify
	c.ProviderRate, c.ProviderBurst = 1000, 100
	res, err := dns.NewResolver(d.Addr, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(verify.Options{Config: c, Resolver: res,
		SMTPPort: p, Hostname: "ctl.test", DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestVerifyCommand(t *testing.T) {
	u := verifyServer(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "list.csv")
	os.WriteFile(list, []byte("email\nalice@ok.test\nbob@ok.test\nadmin@ok.test\nnot-an-address\nx@nxdomain.test\n"), 0o600)
	out := filepath.Join(dir, "out.csv")
	cases := []struct {
		name    string
		args    []string
		code    int
		stdout  []string
		stderr  []string
		outFile []string
	}{
		{"deliverable", []string{"verify", "alice@ok.test"}, 0, []string{"alice@ok.test: DELIVERABLE", "accepted"}, nil, nil},
		{"flag after address", []string{"verify", "bob@ok.test", "--quick"}, 0, []string{"bob@ok.test: UNKNOWN", "smtp_not_checked"}, nil, nil},
		{"undeliverable json", []string{"-json", "verify", "bob@ok.test"}, 0, []string{`"verdict":"undeliverable"`, `"mailbox_not_found"`}, nil, nil},
		{"typo", []string{"verify", "carol@gmial.com"}, 0, []string{"UNDELIVERABLE", "did you mean: gmail.com"}, nil, nil},
		{"file", []string{"verify", "--file", list, "--out", out}, 0,
			[]string{"5 of 5 addresses", "valid    1", "risky    1", "invalid  3"}, []string{"100% 5/5"},
			[]string{"index,address,normalized,verdict", "alice@ok.test,alice@ok.test,deliverable,valid"}},
		{"usage", []string{"verify"}, 1, nil, []string{"wrong arguments"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var so, se bytes.Buffer
			code := run(context.Background(), append([]string{"-url", u}, c.args...), &so, &se)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, c.code, so.String(), se.String())
			}
			for _, w := range c.stdout {
				if !strings.Contains(so.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, so.String())
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(se.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, se.String())
				}
			}
			if c.outFile != nil {
				b, _ := os.ReadFile(out)
				for _, w := range c.outFile {
					if !strings.Contains(string(b), w) {
						t.Errorf("results file lacks %q:\n%s", w, b)
					}
				}
			}
		})
	}
}
