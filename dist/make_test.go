package dist

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestMakeTestPorts: `make test` first says which quick-start ports a
// running `make run`/`make dev` holds (here: a listener on a free port
// standing in for them) and says nothing about free ones.
func TestMakeTestPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	free := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	out, err := exec.Command("make", "-s", "-C", "..", "test-ports", "PETREL_PORTS="+taken+" "+free).CombinedOutput()
	if err != nil {
		t.Fatalf("make test-ports: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "127.0.0.1:"+taken+" is in use") || strings.Contains(string(out), free) {
		t.Fatalf("make test-ports with %s taken and %s free printed:\n%s", taken, free, out)
	}
	dry, err := exec.Command("make", "-s", "-n", "-C", "..", "test").CombinedOutput()
	if err != nil || !strings.Contains(string(dry), "/dev/tcp/127.0.0.1/") {
		t.Fatalf("make test does not run the port check first: %v\n%s", err, dry)
	}
}
