package queue

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestFullDisk runs the spool on a real 96 MiB tmpfs: it is filled to the
// last page by another writer, while stopped and while running. New mail
// is refused with ErrInsufficientStorage, the spool opens on the full
// disk, every acknowledged message is still delivered and recorded, and
// nothing kills the process (Pebble's fatal commit error would).
func TestFullDisk(t *testing.T) {
	fs := testnet.SmallFS(t, 96)
	dir := filepath.Join(fs, "queue")
	filler := filepath.Join(fs, "filler")
	opts := Options{MinFreeSpace: 40 << 20, ScanInterval: 5 * time.Millisecond}
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(dir, ballastName)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !testnet.Wait(10*time.Second, cond) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	waitFor("the 24 MiB reserve file", func() bool {
		fi, err := os.Stat(ballast)
		return err == nil && fi.Size() == 24<<20
	})
	body := strings.Repeat("x", 10<<10)
	var acked []string
	for range 6 {
		acked = append(acked, mustEnqueue(t, q, "s@x.test", []string{"r@y.test"}, body))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// Full while stopped: the spool still opens, in degraded mode.
	testnet.Fill(t, filler)
	q = openTest(t, dir, opts)
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve file not released on a full disk: %v", err)
	}
	if err := q.CheckSpace(); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("CheckSpace on a full disk: %v", err)
	}
	if _, err := q.Enqueue(ctxT(t), Envelope{From: "s@x.test", Recipients: []string{"r@y.test"}}, []byte(body)); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("Enqueue on a full disk: %v, want ErrInsufficientStorage", err)
	}
	if st := q.Stats(); !st.StorageLow || st.Live != 6 {
		t.Fatalf("stats on a full disk: %+v", st)
	}
	// Delivery drains the queue in the room the reserve file left.
	deliver := func(n int) {
		t.Helper()
		for range n {
			b, err := q.Next(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Complete(ctxT(t), b, []Result{{Index: b.Rcpts[0].Index, Outcome: Delivered, Code: 250}}); err != nil {
				t.Fatalf("Complete on a full disk: %v", err)
			}
		}
	}
	deliver(5)

	// Filled again while running, with no reserve file left: nothing is
	// handed out (its result could not be recorded), commits are refused,
	// and the process lives.
	testnet.Fill(t, filler)
	waitFor("the space sample", func() bool { return q.Stats().FreeBytes < 1<<20 })
	nctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	if b, err := q.Next(nctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a disk with no room for the result: %+v, %v", b, err)
	}
	cancel()
	if err := q.AppendEvents(ctxT(t), []Event{{Type: "complained", Recipient: "r@y.test"}}); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("AppendEvents on a full disk: %v", err)
	}

	// Space freed: mail is accepted again, the reserve file comes back
	// and the rest is delivered.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor("mail accepted again", func() bool { return q.CheckSpace() == nil })
	waitFor("the reserve file back", func() bool { _, err := os.Stat(ballast); return err == nil })
	acked = append(acked, mustEnqueue(t, q, "s@x.test", []string{"r@y.test"}, body))
	deliver(2)
	for _, id := range acked {
		m, err := q.Message(id)
		if err != nil {
			t.Fatal(err)
		}
		if st := m.Recipients[0].State; st != StateDelivered {
			t.Errorf("acknowledged message %s: %s, want delivered", id, st)
		}
	}
	if st := q.Stats(); st.Live != 0 || st.StorageLow {
		t.Fatalf("stats after the disk was freed: %+v", st)
	}
}

// TestFullDiskConcurrentWriters: on a real 128 MiB tmpfs, 32 writers
// (half of them through EnqueueBatch, the campaign path) enqueue
// incompressible 512 KiB bodies at once until they are refused. The
// free-space pre-check must hold against all of them together: each
// admission reserves its bytes before the commit, so concurrent writers
// cannot all pass on the same sample, and the file system never comes
// near full (Pebble's fatal commit error on ENOSPC would kill the test
// binary). Every acknowledged message is there after a reopen.
func TestFullDiskConcurrentWriters(t *testing.T) {
	fs := testnet.SmallFS(t, 128)
	dir := filepath.Join(fs, "queue")
	const reserve = 48 << 20
	opts := Options{MinFreeSpace: reserve, ScanInterval: time.Hour}
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !testnet.Wait(10*time.Second, func() bool {
		fi, err := os.Stat(filepath.Join(dir, ballastName))
		return err == nil && fi.Size() == 24<<20
	}) {
		t.Fatal("no reserve file")
	}
	time.Sleep(2 * spaceInterval) // a sample that counts the reserve file
	free := func() int64 {
		du, err := vfs.Default.GetDiskUsage(fs)
		if err != nil {
			t.Error(err)
			return 0
		}
		return int64(du.AvailBytes)
	}
	free0 := free()
	var minFree atomic.Int64
	minFree.Store(free0)
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() { // the lowest free space seen while the writers run
		defer close(polled)
		for {
			if f := free(); f < minFree.Load() {
				minFree.Store(f)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	const size = 512 << 10
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	body := func() []byte {
		b := make([]byte, size)
		rand.Read(b) // incompressible: sstables cannot shrink it
		return b
	}
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := Envelope{From: "s@x.test", Recipients: []string{"r@y.test"}}
			for {
				var ids []string
				var err error
				if w%2 == 0 {
					var id string
					id, err = q.Enqueue(context.Background(), env, body())
					ids = []string{id}
				} else {
					ids, err = q.EnqueueBatch(context.Background(), []NewMessage{{Envelope: env, Body: body()}, {Envelope: env, Body: body()}})
				}
				if errors.Is(err, ErrInsufficientStorage) {
					return
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-polled
	written := int64(len(acked)) * size
	t.Logf("free at start %d MiB, lowest %d MiB, reserve %d MiB; %d messages (%d MiB) acknowledged",
		free0>>20, minFree.Load()>>20, reserve>>20, len(acked), written>>20)
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged")
	}
	// The guard counts a body three times (WAL, flushed sstable, its
	// compaction): what it admitted fits in what was free above the
	// reserve.
	if 3*written > free0-reserve+3*size {
		t.Errorf("admitted %d MiB, three times that is more than the %d MiB free above the reserve", written>>20, (free0-reserve)>>20)
	}
	// Pebble's own writes (a preallocated WAL segment, the MANIFEST,
	// flushes of what a sample already counted) may take free space
	// below the reserve, but never to the critical level where the
	// reserve file must be released (24 MiB file: 12 MiB).
	if low, critical := minFree.Load(), q.space.critical; low < critical {
		t.Errorf("free space fell to %d MiB, below the critical %d MiB (reserve %d MiB): concurrent writers got past the pre-check", low>>20, critical>>20, reserve>>20)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, dir, opts)
	for _, id := range acked {
		if b, err := q.Body(id); err != nil || len(b) != size {
			t.Fatalf("acknowledged message %s after reopen: %d bytes, %v", id, len(b), err)
		}
	}
}
