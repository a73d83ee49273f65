package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidFile is petreld's lock on its data_dir: an exclusive flock on this
// file, which holds the owner's pid. The lock ends with the process (kill
// -9 included), so a stale file never blocks a start.
const pidFile = "petreld.pid"

// lockDataDir takes the data_dir lock and writes our pid into it; the
// returned func releases it. When another process holds it, the error
// names the directory and that petreld's pid.
func lockDataDir(dir string) (unlock func() error, err error) {
	path := filepath.Join(dir, pidFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data_dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("data_dir %s is locked by another petreld (pid %s; lock file %s)", dir, pid, path)
		}
		return nil, fmt.Errorf("data_dir lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return func() error {
		// The file stays (removing it would race a starting petreld
		// that already opened it); closing releases the lock.
		return f.Close()
	}, nil
}
