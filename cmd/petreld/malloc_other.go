//go:build !linux || !cgo

package main

// tuneMalloc does nothing without glibc: Pebble's caches then live in
// the Go heap (no cgo) or in another C allocator.
func tuneMalloc() int { return 0 }
