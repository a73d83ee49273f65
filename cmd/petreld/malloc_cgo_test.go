//go:build linux && cgo

package main

import "testing"

// TestTuneMallocApplies: glibc accepts both settings (arena cap and fixed
// mmap threshold) that keep Pebble's C-heap caches from fragmenting into
// one arena per thread (bench queue_10m: peak RSS 386 -> 264 MB at 1M
// queued recipients).
func TestTuneMallocApplies(t *testing.T) {
	if got := tuneMalloc(); got != 2 {
		t.Fatalf("tuneMalloc applied %d of 2 settings", got)
	}
}
