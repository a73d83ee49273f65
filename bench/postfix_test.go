package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func TestParseSinkRecord(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"sess=0 quit=0 mesg=1", 1, true},
		{"sess=12 quit=3 mesg=20000", 20000, true},
		{"mesg=7", 7, true},
		{"", 0, false},
		{"sess=1 quit=1", 0, false},
		{"sess=1 quit=1 mesg=x", 0, false},
		{"mesg=-3", 0, false},
		{"mesg=99999999999999999999999", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseSinkRecord([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseSinkRecord(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSinkCounterConsume(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=2\r", 2},
		{"sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=3", 3},
		{"sess=0 quit=0 mesg=5\rsess=1 quit=1 mesg=5\r\n", 5},
		{"garbage\r\n\r\n", 0},
		{"", 0},
	}
	for _, tc := range tests {
		var c SinkCounter
		if err := c.Consume(strings.NewReader(tc.in)); err != nil {
			t.Fatal(err)
		}
		if got := c.Messages(); got != tc.want {
			t.Errorf("Consume(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestPrivateMasterCF(t *testing.T) {
	shipped := "# comment y\nsmtp      inet  n       -       y       -       -       smtpd\n" +
		"pickup    unix  n       -       y       60      1       pickup\n" +
		"relay     unix  -       -       y       -       -       smtp\n        -o syslog_name=postfix/$service_name\n" +
		"postlog   unix-dgram n  -       n       -       1       postlogd\n"
	got := string(PrivateMasterCF([]byte(shipped), "127.0.0.1:2626"))
	want := "# comment y\n127.0.0.1:2626 inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n" +
		"relay unix - - n - - smtp\n        -o syslog_name=postfix/$service_name\npostlog unix-dgram n - n - 1 postlogd\n"
	if got != want {
		t.Errorf("PrivateMasterCF =\n%s\nwant\n%s", got, want)
	}
}

func FuzzParseSinkRecord(f *testing.F) {
	f.Add([]byte("sess=0 quit=0 mesg=1"))
	f.Add([]byte("mesg="))
	f.Add([]byte("mesg=18446744073709551616"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := ParseSinkRecord(b)
		if ok && n < 0 {
			t.Fatalf("negative count %d from %q", n, b)
		}
		var c SinkCounter
		if err := c.Consume(strings.NewReader(string(b))); err != nil {
			t.Fatal(err)
		}
		if c.Messages() < 0 {
			t.Fatal("negative counter")
		}
	})
}

func needPostfix(t *testing.T) {
	t.Helper()
	if !PostfixInstalled() {
		testnet.SkipOrFail(t, "postfix not installed (apt-get install postfix); make bench and .ci/run install it")
	}
	if os.Geteuid() != 0 {
		testnet.SkipOrFail(t, "a private Postfix instance needs root")
	}
}

// TestCrossCheckReferenceTools runs Postfix's smtp-source into our sink and
// our load generator into Postfix's smtp-sink.
func TestCrossCheckReferenceTools(t *testing.T) {
	needPostfix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("smtp-source to sink", func(t *testing.T) {
		s := startSink(t, SinkOptions{})
		if _, err := RunSMTPSource(ctx, SourceOptions{Addr: s.Addr(), Sessions: 3, Messages: 30, Size: 1000, Recipients: 2}); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Messages != 30 || st.Recipients != 60 {
			t.Errorf("sink = %+v, want 30 messages 60 recipients", st)
		}
	})
	t.Run("loadgen to smtp-sink", func(t *testing.T) {
		ss, err := StartSMTPSink(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer ss.Stop()
		res, err := RunSMTP(ctx, SMTPLoad{Addr: ss.Addr(), Sessions: 3, Messages: 30, Size: 1000, Recipients: 2})
		if err != nil || res.Accepted != 30 {
			t.Fatalf("loadgen = %+v, %v", res, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if _, err := ss.WaitMessages(wctx, 30); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPostfixRelay(t *testing.T) {
	needPostfix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startSink(t, SinkOptions{})
	// t.TempDir's parent is 0700, which the postfix user cannot traverse.
	dir, err := os.MkdirTemp("", "petrel-bench-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("KEEP") == "" {
			_ = os.RemoveAll(dir)
		}
	})
	p, err := StartPostfix(ctx, PostfixOptions{Dir: dir, RelayPort: s.Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// 200 messages: enough Postfix CPU to register at the kernel's 10 ms
	// accounting tick (20 measured 0 s once in CI).
	res, err := RunSMTP(ctx, SMTPLoad{Addr: p.Addr(), Sessions: 2, Messages: 200, Size: 1000, Recipients: 1})
	if err != nil || res.Accepted != 200 {
		t.Fatalf("loadgen = %+v, %v", res, err)
	}
	if _, err := s.WaitMessages(ctx, 200); err != nil {
		t.Fatal(err)
	}
	if cpu, err := p.CPU(); err != nil || cpu <= 0 {
		t.Errorf("postfix CPU = %v, %v", cpu, err)
	}
}
