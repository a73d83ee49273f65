package suppress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func openT(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAddGetRemove(t *testing.T) {
	s := openT(t)
	var changes []string
	s.OnChange = func(e Entry, removed bool) {
		changes = append(changes, fmt.Sprintf("%s/%s/%v", e.Stream, e.Address, removed))
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.Add(Entry{Address: "John.Doe@Example.COM", Stream: "marketing", Reason: ReasonUnsubscribe, Source: "test", Time: when}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Entry{Address: "global@example.com", Reason: ReasonHardBounce}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		stream, addr string
		want         Reason
		ok           bool
	}{
		{"marketing", "John.Doe@Example.COM", ReasonUnsubscribe, true},
		{"marketing", "john.doe@example.com", ReasonUnsubscribe, true},
		{"marketing", "<JOHN.DOE@EXAMPLE.COM>", ReasonUnsubscribe, true},
		{"transactional", "john.doe@example.com", "", false},
		{"transactional", "global@example.com", ReasonHardBounce, true},
		{"marketing", "Global@Example.com", ReasonHardBounce, true},
		{"*", "global@example.com", ReasonHardBounce, true},
		{"marketing", "other@example.com", "", false},
		{"marketing", "", "", false},
	}
	for _, tc := range tests {
		r, ok := s.Suppressed(tc.stream, tc.addr)
		if r != tc.want || ok != tc.ok {
			t.Errorf("Suppressed(%q,%q) = %q,%v want %q,%v", tc.stream, tc.addr, r, ok, tc.want, tc.ok)
		}
	}
	e, err := s.Get("marketing", "JOHN.DOE@example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Address: "John.Doe@example.com", Stream: "marketing", Reason: ReasonUnsubscribe, Source: "test", Time: when}
	if e != want {
		t.Fatalf("Get = %+v, want %+v", e, want)
	}
	if _, err := s.Remove("marketing", "john.doe@EXAMPLE.com"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Suppressed("marketing", "john.doe@example.com"); ok {
		t.Fatal("still suppressed after Remove")
	}
	if _, err := s.Remove("marketing", "john.doe@example.com"); err != ErrNotFound {
		t.Fatalf("second Remove: %v, want ErrNotFound", err)
	}
	wantChanges := "marketing/John.Doe@example.com/false *//global@example.com/false marketing/John.Doe@example.com/true"
	wantChanges = strings.Replace(wantChanges, "*//", "*/", 1)
	if got := strings.Join(changes, " "); got != wantChanges {
		t.Fatalf("OnChange calls %q, want %q", got, wantChanges)
	}
}

func TestAddRejects(t *testing.T) {
	s := openT(t)
	for _, e := range []Entry{
		{Address: "nodomain"},
		{Address: "@example.com"},
		{Address: "a@"},
		{Address: "a b@example.com"},
		{Address: "a,b@example.com"},
		{Address: "a@example.com", Reason: "spite"},
		{Address: "a@example.com", Stream: "bad stream"},
		{Address: "a@example.com", Stream: "a/b"},
	} {
		if _, err := s.Add(e); err == nil {
			t.Errorf("Add(%+v) accepted", e)
		}
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Entry{Address: "a@example.com", Stream: "marketing", Reason: ReasonComplaint}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, ok := s.Suppressed("marketing", "A@example.com"); !ok || r != ReasonComplaint {
		t.Fatalf("after reopen: %q %v", r, ok)
	}
}

func TestListPaging(t *testing.T) {
	s := openT(t)
	for i := 0; i < 25; i++ {
		for _, st := range []string{"marketing", "transactional"} {
			if _, err := s.Add(Entry{Address: fmt.Sprintf("u%02d@example.com", i), Stream: st}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		stream string
		limit  int
		want   int
		pages  int
	}{
		{"marketing", 10, 25, 3},
		{"marketing", 25, 25, 1},
		{"transactional", 7, 25, 4},
		{"", 20, 50, 3},
		{"nosuch", 10, 0, 1},
	}
	for _, tc := range tests {
		seen := map[string]bool{}
		after, pages := "", 0
		for {
			p, err := s.List(tc.stream, after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, e := range p.Entries {
				if tc.stream != "" && e.Stream != tc.stream {
					t.Fatalf("stream %q listed %+v", tc.stream, e)
				}
				k := e.Stream + "/" + e.Address
				if seen[k] {
					t.Fatalf("%s listed twice", k)
				}
				seen[k] = true
			}
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if len(seen) != tc.want || pages != tc.pages {
			t.Errorf("List(%q, limit %d): %d entries in %d pages, want %d in %d", tc.stream, tc.limit, len(seen), pages, tc.want, tc.pages)
		}
	}
	if _, err := s.List("", "garbage!", 10); err == nil {
		t.Fatal("bad cursor accepted")
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	src := openT(t)
	in := "address,stream,reason,source,time\n" +
		"a@Example.com,marketing,unsubscribe,crm,2025-05-01T10:00:00Z\n" +
		"b@example.com,,hard_bounce\n" +
		"C@example.org\n" +
		"\n" +
		"d@example.net,transactional,complaint,fbl,2025-06-01T00:00:00Z\n"
	n, err := src.Import(strings.NewReader(in), "")
	if err != nil || n != 4 {
		t.Fatalf("Import = %d, %v", n, err)
	}
	var buf bytes.Buffer
	if m, err := src.Export(&buf, ""); err != nil || m != 4 {
		t.Fatalf("Export = %d, %v", m, err)
	}
	dst := openT(t)
	if n, err := dst.Import(bytes.NewReader(buf.Bytes()), "x"); err != nil || n != 4 {
		t.Fatalf("re-Import = %d, %v", n, err)
	}
	a, _ := src.List("", "", 100)
	b, _ := dst.List("", "", 100)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("round trip differs:\n%v\n%v", a, b)
	}
	checks := []struct {
		stream, addr string
		reason       Reason
		source       string
	}{
		{"marketing", "a@example.com", ReasonUnsubscribe, "crm"},
		{"*", "b@example.com", ReasonHardBounce, "import"},
		{"*", "c@example.org", ReasonManual, "import"},
		{"transactional", "d@example.net", ReasonComplaint, "fbl"},
	}
	for _, c := range checks {
		e, err := dst.Get(c.stream, c.addr)
		if err != nil || e.Reason != c.reason || e.Source != c.source {
			t.Errorf("Get(%s,%s) = %+v, %v", c.stream, c.addr, e, err)
		}
	}
	var mk bytes.Buffer
	if m, err := src.Export(&mk, "marketing"); err != nil || m != 1 {
		t.Fatalf("Export(marketing) = %d, %v", m, err)
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		errHas   string
	}{
		{"bad address", "ok@example.com\nnot-an-address\n", 1, "line 2"},
		{"bad reason", "a@example.com,*,bored\n", 0, "reason"},
		{"bad time", "a@example.com,*,manual,x,yesterday\n", 0, "time"},
		{"too many fields", "a@example.com,*,manual,x,2025-01-01T00:00:00Z,extra\n", 0, "fields"},
		{"bad quoting", "\"a@example.com\n", 0, "import"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t)
			n, err := s.Import(strings.NewReader(tc.in), "")
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || n != tc.n {
				t.Fatalf("Import = %d, %v; want %d and error containing %q", n, err, tc.n, tc.errHas)
			}
			p, _ := s.List("", "", 10)
			if len(p.Entries) != tc.n {
				t.Fatalf("%d entries stored, want %d", len(p.Entries), tc.n)
			}
		})
	}
}

// genCSV streams n synthetic rows.
func genCSV(n int, stream string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		var buf []byte
		for i := 0; i < n; i++ {
			buf = fmt.Appendf(buf, "user%d@d%d.example,%s,hard_bounce\n", i, i%1000, stream)
			if len(buf) > 64<<10 {
				pw.Write(buf)
				buf = buf[:0]
			}
		}
		pw.Write(buf)
		pw.Close()
	}()
	return pr
}

func TestMillionEntries(t *testing.T) {
	testnet.SkipIfShort(t, "1M-entry import")
	s := openT(t)
	const n = 1_000_000
	got, err := s.Import(genCSV(n, "marketing"), "")
	if err != nil || got != n {
		t.Fatalf("Import = %d, %v", got, err)
	}
	for _, i := range []int{0, 1, 4711, n / 2, n - 1} {
		a := fmt.Sprintf("USER%d@D%d.example", i, i%1000)
		if r, ok := s.Suppressed("marketing", a); !ok || r != ReasonHardBounce {
			t.Errorf("%s not suppressed", a)
		}
		if _, ok := s.Suppressed("transactional", a); ok {
			t.Errorf("%s suppressed in transactional", a)
		}
	}
	for _, a := range []string{fmt.Sprintf("user%d@d0.example", n), "user1@d2.example", "nobody@example.com"} {
		if _, ok := s.Suppressed("marketing", a); ok {
			t.Errorf("%s suppressed", a)
		}
	}
}

// BenchmarkSuppressed measures the hot-path lookup (a miss in the stream
// and in "*", the common case, and a hit) with an empty store and with
// PETREL_SUPPRESS_BENCH_N entries (default 10M; bulk import time is
// reported once).
func BenchmarkSuppressed(b *testing.B) {
	n := 10_000_000
	if v := getenvInt("PETREL_SUPPRESS_BENCH_N"); v > 0 {
		n = v
	}
	for _, size := range []int{0, n} {
		s := openT(b)
		if size > 0 {
			start := time.Now()
			got, err := s.Import(genCSV(size, "marketing"), "")
			if err != nil || got != size {
				b.Fatalf("Import = %d, %v", got, err)
			}
			b.Logf("imported %d entries in %v", size, time.Since(start))
		}
		b.Run(fmt.Sprintf("entries=%d/miss", size), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, ok := s.Suppressed("marketing", fmt.Sprintf("other%d@d%d.example", i, i%1000)); ok {
					b.Fatal("unexpected hit")
				}
			}
		})
		if size > 0 {
			b.Run(fmt.Sprintf("entries=%d/hit", size), func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					j := (i * 7919) % size
					if _, ok := s.Suppressed("marketing", fmt.Sprintf("user%d@d%d.example", j, j%1000)); !ok {
						b.Fatal("unexpected miss")
					}
				}
			})
		}
	}
}
