package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// quickStartBlocks returns the ```sh blocks of README.md's Quick start
// section, in order.
func quickStartBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Quick start")
	if i < 0 {
		t.Fatal("README.md has no Quick start section")
	}
	s = s[i+1:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(s, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestReadmeQuickStart runs README.md's quick start as written, on free
// ports: `make dev` (checked against the Makefile's recipe: the sink and
// petreld on dist/petrel.dev.toml, started here from the same binaries
// and the same config with only the ports changed), then the send block
// (swaks, curl with the generated key, petrel-sendmail) verbatim, and
// asserts the sink received every message with the README's envelope and
// that `petrelctl events tail -type delivered` lists them.
func TestReadmeQuickStart(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed (the README's first example uses it; .ci/run installs it)")
	}
	blocks := quickStartBlocks(t)
	var dev, send, tail string
	for _, b := range blocks {
		switch {
		case strings.TrimSpace(b) == "make dev":
			dev = b
		case strings.Contains(b, "swaks"):
			send = b
		case strings.Contains(b, "events tail"):
			tail = b
		}
	}
	if dev == "" || send == "" || tail == "" {
		t.Fatalf("quick start lacks the make dev / send / events tail blocks: %q", blocks)
	}
	recipe, err := exec.Command("make", "-s", "-n", "-C", "..", "dev").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n dev: %v\n%s", err, recipe)
	}
	for _, want := range []string{"petrelctl sink -listen 127.0.0.1:2526 -dir petrel-data/sink", "petreld -config dist/petrel.dev.toml", "./cmd/petrel-sendmail"} {
		if !strings.Contains(string(recipe), want) {
			t.Fatalf("make dev recipe lacks %q:\n%s", want, recipe)
		}
	}
	devCfg, err := os.ReadFile("petrel.dev.toml")
	if err != nil {
		t.Fatal(err)
	}
	smtpAddr, httpAddr, sinkAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ports := strings.NewReplacer("127.0.0.1:2525", smtpAddr, "127.0.0.1:8025", httpAddr, "127.0.0.1:2526", sinkAddr)
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:8025", "127.0.0.1:2526"} {
		if !strings.Contains(string(devCfg)+send, a) && a != "127.0.0.1:8025" {
			t.Fatalf("%s appears neither in dist/petrel.dev.toml nor the send block", a)
		}
	}

	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "dist"), 0o755)
	os.WriteFile(filepath.Join(work, "dist", "petrel.dev.toml"), []byte(ports.Replace(string(devCfg))), 0o644)
	os.Symlink(binDir, filepath.Join(work, "bin"))
	// The commands' defaults (petrelctl -url, petrel-sendmail's server)
	// point at the standard ports; the environment moves them.
	env := []string{"PETREL_URL=http://" + httpAddr, "PETREL_SENDMAIL=smtp://" + smtpAddr, "PETREL_API_KEY=", "PETREL_DATA_DIR="}
	sink := child(t, work, env, "petrelctl", "sink", "-listen", sinkAddr, "-dir", "petrel-data/sink")
	waitListen(t, sinkAddr)
	daemon := child(t, work, env, "petreld", "-config", "dist/petrel.dev.toml")
	waitListen(t, smtpAddr, httpAddr)

	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("sh", "-e", "-c", ports.Replace(script))
		cmd.Dir = work
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README block failed: %v\n%s\n--- output:\n%s\n--- petreld:\n%s", err, script, out, daemon.String())
		}
		return string(out)
	}
	sendOut := sh(send)
	n := strings.Count(send, "swaks ") + strings.Count(send, "curl ") + strings.Count(send, "petrel-sendmail ")
	if n != 3 {
		t.Fatalf("send block has %d sending commands, want 3 (swaks, curl, petrel-sendmail)", n)
	}
	line := "delivered to sink: from=<me@example.com> to=<you@example.net>"
	if !testnet.Wait(30*time.Second, func() bool { return strings.Count(sink.String(), line) >= n }) {
		t.Fatalf("sink got %d of %d messages\nsink:\n%s\nsend output:\n%s\npetreld:\n%s", strings.Count(sink.String(), line), n, sink.String(), sendOut, daemon.String())
	}
	for _, subj := range []string{`subject="Hi"`, `subject="cron"`} {
		if !strings.Contains(sink.String(), subj) {
			t.Errorf("sink lacks %s:\n%s", subj, sink.String())
		}
	}
	files, _ := filepath.Glob(filepath.Join(work, "petrel-data", "sink", "*.eml"))
	if len(files) != n {
		t.Errorf("sink stored %d files, want %d", len(files), n)
	}
	// Delivered events are committed right after the sink's 250.
	var tailOut string
	if !testnet.Wait(10*time.Second, func() bool {
		tailOut = sh(tail)
		return strings.Count(tailOut, "you@example.net") >= n
	}) {
		t.Fatalf("events tail -type delivered:\n%s", tailOut)
	}
	if strings.Contains(daemon.String(), "recipient suppressed") {
		t.Errorf("quick start suppressed an address:\n%s", daemon.String())
	}
}
