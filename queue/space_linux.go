package queue

import (
	"os"
	"syscall"
)

// allocate gives f size bytes of allocated blocks (fallocate(2)).
func allocate(f *os.File, size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
