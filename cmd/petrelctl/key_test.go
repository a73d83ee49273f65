package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/petrel-mta/petrel/config"
)

// TestLocalKeyOnlyToLoopback: petrelctl sends the local api.key only to a
// petreld on a loopback address. With -url naming another host (the
// client's dialer still reaches the loopback test server, so a leaked key
// would be seen) it refuses before sending anything and says to give
// -key; a 401 answer to the file's key names the file.
func TestLocalKeyOnlyToLoopback(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer good" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"bad key"}}`))
			return
		}
		w.Write([]byte(`{"ready":1}`))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// Every dial goes to the test server, whatever host the URL names.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}}
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, "api.key"), []byte("good\n"), 0o600)
	badDir := t.TempDir()
	os.WriteFile(filepath.Join(badDir, "api.key"), []byte("stale\n"), 0o600)

	tests := []struct {
		name     string
		args     []string
		code     int
		sent     string // Authorization header the server saw; "" = no request
		has      string // in stderr
		hasNot   string
		fromFile bool
	}{
		{"loopback uses the file", []string{"-url", "http://127.0.0.1:" + port, "-data-dir", dataDir}, 0, "Bearer good", "", "", true},
		{"localhost uses the file", []string{"-url", "http://localhost:" + port, "-data-dir", dataDir}, 0, "Bearer good", "", "", true},
		{"other host refused", []string{"-url", "http://mail.example.net:" + port, "-data-dir", dataDir}, 1, "", "no API key for http://mail.example.net:" + port + ": give -key", "", false},
		{"other host with -key", []string{"-url", "http://mail.example.net:" + port, "-data-dir", dataDir, "-key", "good"}, 0, "Bearer good", "", "", false},
		{"wrong -key: no file hint", []string{"-url", "http://127.0.0.1:" + port, "-data-dir", dataDir, "-key", "nope"}, 1, "Bearer nope", "401", "api.key", false},
		{"stale file: named", []string{"-url", "http://127.0.0.1:" + port, "-data-dir", badDir}, 1, "Bearer stale", "the key was read from " + filepath.Join(badDir, "api.key"), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PETREL_API_KEY", "")
			mu.Lock()
			seen = nil
			mu.Unlock()
			var out, errb bytes.Buffer
			code := runClient(context.Background(), append(tc.args, "queue", "stats"), &out, &errb, hc)
			mu.Lock()
			got := strings.Join(seen, ",")
			mu.Unlock()
			if code != tc.code || got != tc.sent {
				t.Fatalf("exit %d, server saw %q; want %d and %q\n%s%s", code, got, tc.code, tc.sent, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.has) || (tc.hasNot != "" && strings.Contains(errb.String(), tc.hasNot)) {
				t.Fatalf("stderr %q: want %q, not %q", errb.String(), tc.has, tc.hasNot)
			}
		})
	}
}

// TestDomainAddSuggestions: without [sending] spf_ips the SPF record
// authorises the host (a:hostname) instead of "v=spf1 ~all", and a
// hostname that is not fully qualified is warned about for the MX target
// on stdout (zone comment) and stderr.
func TestDomainAddSuggestions(t *testing.T) {
	tests := []struct {
		name, hostname string
		ips            []string
		has            []string
		warn           string // in stderr; "" = none
	}{
		{"no ips, fqdn", "mta1.brand.test", nil, []string{`brand.test. IN TXT "v=spf1 a:mta1.brand.test ~all"`, "bounce.brand.test. IN MX 10 mta1.brand.test."}, "no [sending] spf_ips configured"},
		{"ips", "mta1.brand.test", []string{"192.0.2.7", "2001:db8::7"}, []string{`"v=spf1 ip4:192.0.2.7 ip6:2001:db8::7 ~all"`}, ""},
		{"bare hostname", "buildbox", []string{"192.0.2.7"}, []string{`"v=spf1 ip4:192.0.2.7 ~all"`, "bounce.brand.test. IN MX 10 buildbox.", `; warning: MX target "buildbox" is not a fully qualified domain name`}, `MX record: MX target "buildbox"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := policyServer(t, func(c *config.Config) { c.Hostname, c.Sending.SPFIPs = tc.hostname, tc.ips })
			out, errs, code := ctl(t, url, "-key", "x", "domain", "add", "brand.test")
			if code != 0 {
				t.Fatalf("domain add: %d %s", code, errs)
			}
			for _, h := range tc.has {
				if !strings.Contains(out, h) {
					t.Errorf("output lacks %q:\n%s", h, out)
				}
			}
			if strings.Contains(out, `"v=spf1 ~all"`) {
				t.Errorf("suggests an SPF record that authorises nobody:\n%s", out)
			}
			if (tc.warn == "") != (errs == "") || !strings.Contains(errs, tc.warn) {
				t.Errorf("stderr %q, want %q", errs, tc.warn)
			}
		})
	}
}
