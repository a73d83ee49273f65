package testnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of sizeMiB MiB on a new temporary directory for
// tests that fill a file system, and unmounts it when the test ends. It
// needs root (CAP_SYS_ADMIN): when the mount fails the test is skipped,
// or fails when CI=true (CI runs as root).
func SmallFS(t testing.TB, sizeMiB int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0755", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a %d MiB tmpfs on %s (needs root): %v: %s", sizeMiB, dir, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill appends to the file at path until its file system is full (the
// write fails with ENOSPC), down to single 4 KiB pages, and returns the
// bytes written.
func Fill(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	buf := make([]byte, 1<<20)
	for n := len(buf); n >= 4096; {
		k, err := f.Write(buf[:n])
		total += int64(k)
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("fill %s: %v", path, err)
		}
		n /= 2
	}
	return total
}
