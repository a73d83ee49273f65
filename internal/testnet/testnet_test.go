package testnet

import (
	"net/smtp"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSAnswers(t *testing.T) {
	d, err := StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Add("a.test. 300 IN MX 10 mx.a.test.", "mx.a.test. 300 IN A 127.0.0.5")
	d.SetRcode("broken.test", dns.RcodeServerFailure)
	c := &dns.Client{Timeout: time.Second}
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"a.test.", dns.TypeMX, dns.RcodeSuccess, 1},
		{"mx.a.test.", dns.TypeA, dns.RcodeSuccess, 1},
		{"mx.a.test.", dns.TypeAAAA, dns.RcodeSuccess, 0},
		{"nope.test.", dns.TypeMX, dns.RcodeNameError, 0},
		{"broken.test.", dns.TypeMX, dns.RcodeServerFailure, 0},
	}
	for _, tc := range cases {
		for _, net := range []string{"udp", "tcp"} {
			c.Net = net
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			r, _, err := c.Exchange(m, d.Addr)
			if err != nil {
				t.Fatalf("%s %s: %v", net, tc.name, err)
			}
			if r.Rcode != tc.rcode || len(r.Answer) != tc.n {
				t.Errorf("%s %s %d: rcode %d answers %d, want %d %d", net, tc.name, tc.qtype, r.Rcode, len(r.Answer), tc.rcode, tc.n)
			}
		}
	}
}

func TestMXScript(t *testing.T) {
	mx, err := StartMX(MXOptions{Script: MXScript{
		OnRcpt: func(rcpt string, attempt int) error {
			if strings.HasPrefix(rcpt, "bad@") {
				return Reply(550, "5.1.1", "no such user")
			}
			if strings.HasPrefix(rcpt, "grey@") && attempt == 1 {
				return Reply(450, "4.2.0", "greylisted")
			}
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer mx.Close()
	send := func(to string) error {
		return smtp.SendMail(mx.Addr, nil, "a@b.test", []string{to}, []byte("Subject: x\r\n\r\nhi\r\n"))
	}
	if err := send("bad@x.test"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("bad: %v", err)
	}
	if err := send("grey@x.test"); err == nil || !strings.Contains(err.Error(), "450") {
		t.Fatalf("grey 1: %v", err)
	}
	if err := send("grey@x.test"); err != nil {
		t.Fatalf("grey 2: %v", err)
	}
	if mx.Count() != 1 || mx.Mails()[0].Rcpts[0] != "grey@x.test" {
		t.Fatalf("mails: %+v", mx.Mails())
	}
}

// TestSkipOrFail runs TestSkipOrFailProbe in a child process with and
// without CI=true: a skip outside CI, a failure in CI.
func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct{ ci, want string }{{"true", "--- FAIL: TestSkipOrFailProbe"}, {"", "--- SKIP: TestSkipOrFailProbe"}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipOrFailProbe$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "CI="+tc.ci, "PETREL_SKIP_PROBE=1")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "missing thing") {
			t.Errorf("CI=%q: want %q with the reason, got:\n%s", tc.ci, tc.want, out)
		}
	}
}

// TestSkipOrFailProbe is TestSkipOrFail's child; it does nothing (and
// passes) unless PETREL_SKIP_PROBE is set.
func TestSkipOrFailProbe(t *testing.T) {
	if os.Getenv("PETREL_SKIP_PROBE") == "" {
		return
	}
	SkipOrFail(t, "missing %s", "thing")
}
