//go:build linux && cgo

package main

/*
#include <malloc.h>

// petrelTuneMalloc bounds glibc's C heap, where Pebble keeps its block
// caches and memtables (cgo calloc, outside the Go heap). Returns the
// number of settings glibc accepted.
static int petrelTuneMalloc(void) {
	int ok = 0;
#ifdef M_ARENA_MAX
	// One arena per thread that ever called malloc (up to 8 per core)
	// each kept 10-17 MiB of freed cache blocks resident with 1M
	// recipients queued: 11 arenas held ~140 MiB for ~70 MiB of caches.
	ok += mallopt(M_ARENA_MAX, 2);
#endif
#ifdef M_MMAP_THRESHOLD
	// A fixed threshold (setting it turns off glibc's dynamic one, which
	// rises to the size of the first freed memtable) keeps every
	// allocation of 256 KiB or more (memtables) in its own mapping, given
	// back to the kernel when Pebble frees it.
	ok += mallopt(M_MMAP_THRESHOLD, 256 << 10);
#endif
	return ok;
}
*/
import "C"

// tuneMalloc is called once at start, before Pebble opens (see
// petrelTuneMalloc); it returns how many settings were applied.
func tuneMalloc() int { return int(C.petrelTuneMalloc()) }
