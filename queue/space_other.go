//go:build !linux

package queue

import (
	"errors"
	"os"
)

// allocate is not available here: writeBallast writes zeros instead.
func allocate(*os.File, int64) error { return errors.ErrUnsupported }
