package testnet

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// pyVerify verifies every signature of every message (a JSON list of
// base64 messages on stdin) with Debian's python3-dkim (dkimpy), fetching
// keys from the test DNS server with dnspython. It prints one line per
// message with one "ok"/"fail" word per signature.
const pyVerify = `
import sys, json, base64, dkim, dns.resolver
port = int(sys.argv[1])
res = dns.resolver.Resolver(configure=False)
res.nameservers = ['127.0.0.1']
res.port = port
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    ans = res.resolve(name, 'TXT', lifetime=timeout)
    return b''.join(b''.join(r.strings) for r in ans)
def check(d, i):
    try:
        return 'ok' if d.verify(idx=i, dnsfunc=dnsfunc) else 'fail'
    except Exception:  # ValidationError, KeyFormatError, DNS errors
        return 'fail'
for m in json.load(sys.stdin):
    msg = base64.b64decode(m)
    n = sum(1 for l in msg.split(b'\r\n\r\n')[0].split(b'\r\n') if l.lower().startswith(b'dkim-signature:'))
    d = dkim.DKIM(msg)
    print(' '.join(check(d, i) for i in range(n)))
`

// PythonDKIM returns a DKIM verifier independent of go-msgauth: Debian's
// python3-dkim, run by /usr/bin/python3, with keys from the test DNS
// server at dnsAddr. For each message it returns one "ok"/"fail" word per
// DKIM-Signature, space-separated. When python3-dkim is not installed the
// test is skipped, or fails in CI (.ci/run installs it).
func PythonDKIM(t testing.TB) func(t testing.TB, dnsAddr string, msgs [][]byte) []string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import dkim, dns.resolver, nacl").Run(); err != nil {
		SkipOrFail(t, "independent verifier not installed: apt-get install -y python3-dkim (pulls python3-dnspython, python3-nacl)")
	}
	return func(t testing.TB, dnsAddr string, msgs [][]byte) []string {
		t.Helper()
		_, port, _ := strings.Cut(dnsAddr, ":")
		in, err := json.Marshal(msgs) // []byte encodes as base64
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(py, "-c", pyVerify, port)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python3-dkim: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) != len(msgs) {
			t.Fatalf("python3-dkim answered %d lines for %d messages:\n%s", len(lines), len(msgs), out)
		}
		return lines
	}
}
