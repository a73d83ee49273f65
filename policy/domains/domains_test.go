package domains

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/policy/dkim"
)

func TestCheckDomainStatuses(t *testing.T) {
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res, err := dns.NewResolver(d.Addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ex := Expect{SPFIPs: []string{"192.0.2.10", "2001:db8::10"}, SPFInclude: "_spf.esp.test", MXHost: "mx.petrel.test"}
	keyDir := t.TempDir()

	type recs struct{ spf, dkim, mx, dmarc string } // "" absent, "ok", or a variant
	tests := []struct {
		name  string
		r     recs
		want  Status
		state map[string]State
		prob  string // substring of Problem(Usable)
	}{
		{"nothing", recs{}, Unverified, map[string]State{KindSPF: Missing, KindDKIM: Missing, KindMX: Missing, KindDMARC: Missing}, "SPF record"},
		{"spf only", recs{spf: "ok"}, Unverified, map[string]State{KindSPF: OK, KindDKIM: Missing}, "DKIM record s1._domainkey."},
		{"spf+dkim", recs{spf: "ok", dkim: "ok"}, Unverified, map[string]State{KindMX: Missing}, "MX record bounce."},
		{"spf+dkim+mx", recs{spf: "ok", dkim: "ok", mx: "ok"}, Usable, map[string]State{KindDMARC: Missing}, ""},
		{"all", recs{spf: "ok", dkim: "ok", mx: "ok", dmarc: "ok"}, Verified, map[string]State{KindSPF: OK, KindDKIM: OK, KindMX: OK, KindDMARC: OK}, ""},
		{"dmarc only", recs{dmarc: "ok"}, Unverified, map[string]State{KindDMARC: OK, KindSPF: Missing}, "SPF"},
		{"dkim other key", recs{spf: "ok", dkim: "otherkey", mx: "ok", dmarc: "ok"}, Unverified, map[string]State{KindDKIM: Wrong}, "DKIM record s1._domainkey."},
		{"spf lacks ip", recs{spf: "partial", dkim: "ok", mx: "ok"}, Unverified, map[string]State{KindSPF: Wrong}, "lacks ip6:2001:db8::10"},
		{"two spf", recs{spf: "double", dkim: "ok", mx: "ok"}, Unverified, map[string]State{KindSPF: Wrong}, "2 v=spf1 records"},
		{"mx elsewhere", recs{spf: "ok", dkim: "ok", mx: "elsewhere", dmarc: "ok"}, Unverified, map[string]State{KindMX: Wrong}, "no MX points to mx.petrel.test"},
		{"mx only A", recs{spf: "ok", dkim: "ok", mx: "aonly"}, Unverified, map[string]State{KindMX: Missing}, "MX record"},
		{"dmarc broken", recs{spf: "ok", dkim: "ok", mx: "ok", dmarc: "broken"}, Usable, map[string]State{KindDMARC: Wrong}, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dom := fmt.Sprintf("case%d.example.test", i)
			rec, err := dkim.Keygen(keyDir, dom, "s1", dkim.AlgoEd25519)
			if err != nil {
				t.Fatal(err)
			}
			kr, err := dkim.NewKeyring(keyDir, nil, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			keys := kr.Keys(dom)
			want, err := Records(dom, ex, keys)
			if err != nil {
				t.Fatal(err)
			}
			zone := map[string]string{}
			for _, r := range want {
				zone[r.Kind] = r.Zone
			}
			if zone[KindDKIM] != rec {
				t.Fatalf("DKIM record %q differs from keygen's %q", zone[KindDKIM], rec)
			}
			d.Add("other.test. 300 IN TXT \"unrelated\"") // noise
			switch tc.r.spf {
			case "ok":
				d.Add(zone[KindSPF])
			case "partial":
				d.Add(dom + ". 300 IN TXT \"v=spf1 ip4:192.0.2.10 include:_spf.esp.test ~all\"")
			case "double":
				d.Add(zone[KindSPF], dom+". 300 IN TXT \"v=spf1 -all\"")
			}
			switch tc.r.dkim {
			case "ok":
				d.Add(zone[KindDKIM])
			case "otherkey":
				other, err := dkim.Keygen(t.TempDir(), dom, "s1", dkim.AlgoEd25519)
				if err != nil {
					t.Fatal(err)
				}
				d.Add(other)
			}
			switch tc.r.mx {
			case "ok":
				d.Add(zone[KindMX])
			case "elsewhere":
				d.Add("bounce." + dom + ". 300 IN MX 10 mx.elsewhere.test.")
			case "aonly":
				d.Add("bounce." + dom + ". 300 IN A 192.0.2.1")
			}
			switch tc.r.dmarc {
			case "ok":
				d.Add(zone[KindDMARC])
			case "broken":
				d.Add("_dmarc." + dom + ". 300 IN TXT \"v=DMARC1; rua=mailto:x@y\"")
			}
			got, err := CheckDomain(context.Background(), res, dom, ex, keys)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want {
				t.Errorf("status %s, want %s: %+v", got.Status, tc.want, got.Checks)
			}
			for _, c := range got.Checks {
				if w, ok := tc.state[c.Kind]; ok && c.State != w {
					t.Errorf("%s: %s (%s), want %s", c.Kind, c.State, c.Detail, w)
				}
			}
			p := got.Problem(Usable)
			if (tc.prob == "") != (p == "") || !strings.Contains(p, tc.prob) {
				t.Errorf("Problem(usable) = %q, want containing %q", p, tc.prob)
			}
		})
	}
}

func TestCheckTemporaryFailure(t *testing.T) {
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res, err := dns.NewResolver(d.Addr, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Drop("flaky.test", true)
	got, err := CheckDomain(context.Background(), res, "flaky.test", Expect{MXHost: "mx.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Checks[0].Kind != KindSPF || got.Checks[0].State != Error || got.Status != Unverified {
		t.Fatalf("dropped SPF lookup: %+v", got)
	}

	// The registry keeps a good status through a temporary failure.
	reg, err := OpenRegistry(filepath.Join(t.TempDir(), "domains.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add("flaky.test"); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetResult(Result{Domain: "flaky.test", Status: Verified, Checked: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetResult(got); err != nil {
		t.Fatal(err)
	}
	if r, _ := reg.Get("flaky.test"); r.Status != Verified {
		t.Fatalf("status after temporary failure %s, want verified", r.Status)
	}
}

func TestRegistryPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x", "domains.json")
	reg, err := OpenRegistry(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"Example.COM.", "b.example.org"} {
		if _, err := reg.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "localhost", "../x", "a..b"} {
		if _, err := reg.Add(bad); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
	}
	if err := reg.SetResult(Result{Domain: "example.com", Status: Usable, Checks: []Check{{Record: Record{Kind: KindDMARC, Name: "_dmarc.example.com."}, State: Missing}}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetResult(Result{Domain: "unknown.test"}); err != ErrUnknown {
		t.Fatalf("SetResult(unregistered) = %v", err)
	}
	reg2, err := OpenRegistry(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg2.Domains(), ","); got != "b.example.org,example.com" {
		t.Fatalf("domains after reopen: %s", got)
	}
	r, ok := reg2.Get("EXAMPLE.com")
	if !ok || r.Status != Usable || r.Problem(Verified) != "DMARC record _dmarc.example.com missing" {
		t.Fatalf("reopened result %+v, problem %q", r, r.Problem(Verified))
	}
	if err := reg2.Remove("b.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := reg2.Remove("b.example.org"); err != ErrUnknown {
		t.Fatalf("second Remove: %v", err)
	}
}

// TestSPFSuggestion: the suggested SPF record always authorises a sender
// (the configured egress IPs, the include, or the host itself as a:), a
// bare "v=spf1 ~all" fails the check, and records naming a host that is
// not a fully qualified name carry a warning.
func TestSPFSuggestion(t *testing.T) {
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res, err := dns.NewResolver(d.Addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		ex        Expect
		spf       string
		spfWarn   string // substring; "" = no warning
		mxWarn    string
		published string // SPF text that must fail the check
		lacks     string
	}{
		{"egress ips", Expect{SPFIPs: []string{"192.0.2.10", "2001:db8::10"}, MXHost: "mta1.brand.test"},
			"v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ~all", "", "", "v=spf1 ~all", "lacks ip4:192.0.2.10 ip6:2001:db8::10"},
		{"include only", Expect{SPFInclude: "_spf.esp.test", MXHost: "mta1.brand.test"},
			"v=spf1 include:_spf.esp.test ~all", "", "", "v=spf1 ~all", "lacks include:_spf.esp.test"},
		{"no ips: a:hostname", Expect{MXHost: "MTA1.brand.test."},
			"v=spf1 a:mta1.brand.test ~all", "no [sending] spf_ips configured", "", "v=spf1 ~all", "lacks a:mta1.brand.test"},
		{"bare hostname", Expect{MXHost: "buildbox"},
			"v=spf1 a:buildbox ~all", `SPF a: target "buildbox" is not a fully qualified`, `MX target "buildbox" is not a fully qualified`, "v=spf1 mx ~all", "lacks a:buildbox"},
		{"localdomain", Expect{SPFIPs: []string{"192.0.2.1"}, MXHost: "box.localdomain"},
			"v=spf1 ip4:192.0.2.1 ~all", "", "local name", "v=spf1 ip4:192.0.2.2 ~all", "lacks ip4:192.0.2.1"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dom := fmt.Sprintf("spf%d.example.test", i)
			recs, err := Records(dom, tc.ex, nil)
			if err != nil {
				t.Fatal(err)
			}
			by := map[string]Record{}
			for _, r := range recs {
				by[r.Kind] = r
			}
			if by[KindSPF].Value != tc.spf {
				t.Errorf("SPF %q, want %q", by[KindSPF].Value, tc.spf)
			}
			for kind, want := range map[string]string{KindSPF: tc.spfWarn, KindMX: tc.mxWarn} {
				if got := by[kind].Warning; (want == "") != (got == "") || !strings.Contains(got, want) {
					t.Errorf("%s warning %q, want containing %q", kind, got, want)
				}
			}
			d.Add(fmt.Sprintf("%s. 300 IN TXT %q", dom, tc.published))
			got, err := CheckDomain(context.Background(), res, dom, tc.ex, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c := got.Checks[0]; c.Kind != KindSPF || c.State != Wrong || c.Detail != tc.lacks {
				t.Errorf("check of %q: %s %s %q, want wrong %q", tc.published, c.Kind, c.State, c.Detail, tc.lacks)
			}
			d.Remove(dom)
			d.Add(by[KindSPF].Zone)
			fresh, err := dns.NewResolver(d.Addr, 2*time.Second, nil) // no cached answer
			if err != nil {
				t.Fatal(err)
			}
			got, err = CheckDomain(context.Background(), fresh, dom, tc.ex, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c := got.Checks[0]; c.State != OK {
				t.Errorf("suggested record %q checks %s %s", by[KindSPF].Zone, c.State, c.Detail)
			}
		})
	}
}

func TestFQDNProblem(t *testing.T) {
	for host, bad := range map[string]bool{
		"mta1.example.com": false, "mta1.example.com.": false, "buildbox": true, "localhost": true,
		"box.localdomain": true, "mail.local": true, "192.0.2.1": true, "": true, "a.internal": true,
	} {
		if got := FQDNProblem(host); (got != "") != bad {
			t.Errorf("FQDNProblem(%q) = %q, want problem %v", host, got, bad)
		}
	}
}
