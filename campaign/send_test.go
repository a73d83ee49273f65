package campaign

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	_ "modernc.org/sqlite"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// genSource is n contacts with ids 1..n; every 10th has unsubscribed.
// pause slows every page (the crash test's child runs long enough to be
// killed several times on any machine).
type genSource struct {
	n     int64
	pause time.Duration
}

func (g genSource) Page(_ context.Context, after int64, limit int) ([]Recipient, error) {
	time.Sleep(g.pause)
	var out []Recipient
	for id := after + 1; id <= g.n && len(out) < limit; id++ {
		r := Recipient{ID: id, Email: fmt.Sprintf("c%d@example.test", id), Values: Map{"first_name": "C" + strconv.FormatInt(id, 10)}}
		if id%10 == 0 {
			r.Skip = "unsubscribed"
		}
		out = append(out, r)
	}
	return out, nil
}

func openSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newTestEngine is an engine over a real ingest, a real Pebble queue and
// a real SQLite progress table in a temporary directory.
func newTestEngine(t *testing.T) (*Engine, *queue.Queue) {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	db := openSQLite(t, filepath.Join(dir, "esp.db"))
	t.Cleanup(func() { db.Close() })
	prog, err := NewSQLProgress(context.Background(), db, false)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Submitter: ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)}), Progress: prog}, q
}

const childEnv = "PETREL_CAMPAIGN_CHILD"

// TestMain runs the send as a child process when childEnv names a
// directory (the crash test kills it).
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		n, _ := strconv.ParseInt(os.Getenv(childEnv+"_N"), 10, 64)
		if err := runChild(dir, n); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(dir string, n int64) error {
	ctx := context.Background()
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		return err
	}
	defer q.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "esp.db")+"?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	prog, err := NewSQLProgress(ctx, db, false)
	if err != nil {
		return err
	}
	tpl, err := Compile(Content{Subject: "Hello %first_name%", HTML: "<p>Hi %first_name|there%</p>"}, nil)
	if err != nil {
		return err
	}
	e := &Engine{Submitter: ingest.NewSubmitter(ingest.SubmitOptions{Hostname: "petrel.test", Spool: q, Logger: slog.New(slog.DiscardHandler)}), Progress: prog}
	_, err = e.Run(ctx, Send{ID: "spring", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, PageSize: 40}, genSource{n: n, pause: 10 * time.Millisecond})
	return err
}

// TestSendExactlyOnceAcrossKill9 runs a 6,000-contact send (paced at 10 ms a page, so it lasts long enough to be killed on any machine) in a child
// process over a real Pebble queue and a real SQLite progress table,
// kills it with SIGKILL at random moments until it finishes by itself,
// and then counts the queue: every contact that may be mailed has exactly
// one message, none of the skipped ones has any, and the saved counters
// match.
func TestSendExactlyOnceAcrossKill9(t *testing.T) {
	dir := t.TempDir()
	const n = 6000
	kills := 0
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, childEnv+"_N="+strconv.Itoa(n))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if attempt < 6 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("child failed: %v\n%s", err, stderr.String())
				}
				goto finished
			case <-time.After(time.Duration(100+rand.IntN(300)) * time.Millisecond):
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				continue
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("child failed: %v\n%s", err, stderr.String())
		}
		break
	}
finished:
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	count := map[string]int{}
	for after := ""; ; {
		rs, next, err := q.List(context.Background(), after, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			count[r.Addr]++
		}
		if next == "" {
			break
		}
		after = next
	}
	missing, twice, skippedMailed := 0, 0, 0
	for id := 1; id <= n; id++ {
		c := count[fmt.Sprintf("c%d@example.test", id)]
		switch {
		case id%10 == 0 && c != 0:
			skippedMailed++
		case id%10 != 0 && c == 0:
			missing++
		case c > 1:
			twice++
		}
	}
	db := openSQLite(t, filepath.Join(dir, "esp.db"))
	defer db.Close()
	prog, err := NewSQLProgress(context.Background(), db, false)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := prog.Load(context.Background(), "spring")
	t.Logf("%d kills; %d messages queued; state %+v", kills, len(count), st)
	if missing != 0 || twice != 0 || skippedMailed != 0 {
		t.Fatalf("%d contacts not mailed, %d mailed twice, %d skipped contacts mailed", missing, twice, skippedMailed)
	}
	if !st.Done || st.Sent != n-n/10 || st.Skipped["unsubscribed"] != n/10 || st.After != n {
		t.Fatalf("final state %+v, want done, sent %d, unsubscribed %d", st, n-n/10, n/10)
	}
	if kills == 0 {
		t.Fatal("the send finished before any kill: the test proved nothing")
	}
}

// TestSendResumeAndDone: skipped contacts are counted by reason, a done
// campaign does not send again even when its source has grown, and a send
// without a template is refused.
func TestSendResumeAndDone(t *testing.T) {
	ctx := context.Background()
	e, q := newTestEngine(t)
	tpl, _ := Compile(Content{Subject: "s", Text: "hi %first_name%"}, nil)
	send := Send{ID: "c2", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, PageSize: 7}
	st, err := e.Run(ctx, send, genSource{n: 25})
	if err != nil || !st.Done || st.Sent != 23 || st.Skipped["unsubscribed"] != 2 {
		t.Fatalf("first run: %+v %v", st, err)
	}
	st, err = e.Run(ctx, send, genSource{n: 50}) // done: the grown source is not sent again
	if err != nil || st.Sent != 23 {
		t.Fatalf("second run: %+v %v", st, err)
	}
	if s := q.Stats(); s.Messages != 23 {
		t.Fatalf("%d messages queued, want 23", s.Messages)
	}
	if _, err := e.Run(ctx, Send{ID: "x", From: send.From}, genSource{n: 1}); err != ErrNoTemplate {
		t.Fatalf("no template: %v", err)
	}
}
