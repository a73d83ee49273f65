package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

const crashChildEnv = "PETREL_QUEUE_CRASH_CHILD_DIR"

// TestMain runs crashChild instead of the tests in the child process of
// TestCrashKeepsAcknowledged.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild is the child half of TestCrashKeepsAcknowledged: it
// enqueues concurrently and prints "id body" for every acknowledged
// message until it is killed.
func crashChild(dir string) {
	q, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := fmt.Sprintf("body-%d-%d-%s", w, i, strings.Repeat("z", i%500))
				id, err := q.Enqueue(context.Background(), Envelope{From: "s@src.test",
					Recipients: []string{fmt.Sprintf("r%d@d%d.test", i, w)}}, []byte(body))
				if err != nil {
					fmt.Fprintln(os.Stderr, "enqueue:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "%s %s\n", id, body)
				out.Flush() // acknowledged: the parent may count on it
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashKeepsAcknowledged SIGKILLs a child that enqueues concurrently,
// several times, and checks that every acknowledged message survives with
// its body and is handed out after restart.
func TestCrashKeepsAcknowledged(t *testing.T) {
	testnet.SkipIfShort(t, "spawns processes")
	dir := t.TempDir()
	acked := map[string]string{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			id, body, ok := strings.Cut(sc.Text(), " ")
			if !ok || !validID(id) {
				continue // test framework chatter
			}
			acked[id] = body
			if n++; n == 300+round*100 {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child was not killed: %v\n%s", round, err, stderr.String())
		}
		if n < 300 {
			t.Fatalf("round %d: child acknowledged only %d\n%s", round, n, stderr.String())
		}
	}
	q := openTest(t, dir, Options{})
	for id, body := range acked {
		got, err := q.Body(id)
		if err != nil || string(got) != body {
			t.Fatalf("acknowledged %s lost: %q, %v", id, got, err)
		}
	}
	s := q.Stats()
	if s.Queued < int64(len(acked)) || s.Messages != s.Queued {
		t.Fatalf("stats %+v, acknowledged %d", s, len(acked))
	}
	// Every stored message is handed out exactly once after restart.
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(seen) < int(s.Queued) {
		b, err := q.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d: %v", len(seen), err)
		}
		if seen[b.MsgID] {
			t.Fatalf("handed out twice: %s", b.MsgID)
		}
		seen[b.MsgID] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged %s never handed out", id)
		}
	}
	t.Logf("%d acknowledged over 3 kills, %d stored (unacknowledged extras: %d)", len(acked), s.Queued, int(s.Queued)-len(acked))
}
