package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestValgrindIrCountsRealRuns runs real programs under cachegrind the
// way instructions_valgrind runs petreld (simulations off, one output file
// per process) and checks that ValgrindIr reads their totals: a shell loop
// of 2,000 iterations costs more than one of 20, and a run that forks
// (the loop in a child shell) is summed over both processes' files.
func TestValgrindIrCountsRealRuns(t *testing.T) {
	if _, err := exec.LookPath("valgrind"); err != nil {
		testnet.SkipOrFail(t, "valgrind not installed (apt-get install valgrind)")
	}
	run := func(script string, children bool) (int64, int) {
		dir := t.TempDir()
		args := []string{"--tool=cachegrind", "--cache-sim=no", "--branch-sim=no", "--cachegrind-out-file=" + filepath.Join(dir, "cachegrind.out.%p")}
		if children {
			args = append(args, "--trace-children=yes")
		}
		out, err := exec.Command("valgrind", append(args, "/bin/sh", "-c", script)...).CombinedOutput()
		if err != nil {
			t.Fatalf("valgrind: %v: %s", err, out)
		}
		ir, err := ValgrindIr(dir)
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "cachegrind.out.*"))
		return ir, len(files)
	}
	loop := func(n string) string { return "i=0; while [ $i -lt " + n + " ]; do i=$((i+1)); done" }
	small, _ := run(loop("20"), false)
	big, _ := run(loop("2000"), false)
	if small <= 0 || big <= small {
		t.Fatalf("Ir: 20 iterations %d, 2000 iterations %d", small, big)
	}
	forked, files := run("/bin/sh -c '"+loop("2000")+"'; true", true)
	if files != 2 || forked <= big {
		t.Fatalf("forked run: %d files, Ir %d (single-process loop %d)", files, forked, big)
	}
}

// TestValgrindIrErrors: no output file, or one without totals, is an
// error, never a zero count.
func TestValgrindIrErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ValgrindIr(dir); err == nil {
		t.Fatal("no output files: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, "cachegrind.out.1"), []byte("desc: I1 cache\ncmd: x\nevents: Ir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ValgrindIr(dir); err == nil {
		t.Fatal("file without summary: no error")
	}
}
