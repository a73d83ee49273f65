package audience

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkImportAndSegment imports AUDIENCE_BENCH_ROWS (default
// 1,000,000) contacts with 10 custom fields and 2 tags from a CSV file,
// then counts a 3-condition segment, on each backend. It reports
// rows/s, the import's wall time, the peak RSS of the process during the
// import and the segment count's time. It is a benchmark, not a test:
//
//	go test -run '^$' -bench ImportAndSegment -benchtime 1x -timeout 60m ./audience/
//
// AUDIENCE_BENCH_BACKEND=sqlite or postgres runs one backend only;
// AUDIENCE_BENCH_BATCH sets the rows per import transaction (default
// 1000, [esp] import_batch).
func BenchmarkImportAndSegment(b *testing.B) {
	csvPath, rows := benchCSV(b, "AUDIENCE_BENCH_ROWS", 1_000_000)
	eachBenchBackend(b, func(b *testing.B, backend string) {
		for range b.N {
			benchImport(b, backend, csvPath, rows)
		}
	})
}

// benchCSV writes a benchmark CSV of $env rows (default def) and returns
// its path and size.
func benchCSV(b *testing.B, env string, def int) (string, int) {
	n := def
	if v := os.Getenv(env); v != "" {
		n, _ = strconv.Atoi(v)
	}
	path := filepath.Join(b.TempDir(), "bench.csv")
	writeBenchCSV(b, path, n)
	return path, n
}

// benchStore opens a fresh store (closed at the end of the benchmark)
// with the benchmark audience.
func benchStore(b *testing.B, backend string, opts Options) (*Store, Audience) {
	ctx := context.Background()
	s, err := Open(ctx, backendDSN(b, backend), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	a, err := s.CreateAudience(ctx, Audience{Name: "bench", Fields: benchFields()})
	if err != nil {
		b.Fatal(err)
	}
	return s, a
}

// eachBenchBackend runs fn as a sub-benchmark per backend, or only for
// AUDIENCE_BENCH_BACKEND (sqlite or postgres) when it is set.
func eachBenchBackend(b *testing.B, fn func(b *testing.B, backend string)) {
	for _, backend := range backends {
		if only := os.Getenv("AUDIENCE_BENCH_BACKEND"); only != "" && only != backend {
			continue
		}
		b.Run(backend, func(b *testing.B) { fn(b, backend) })
	}
}

func benchFields() []Field {
	return []Field{
		{Name: "city", Type: Text}, {Name: "country", Type: Text}, {Name: "score", Type: Number},
		{Name: "orders", Type: Number}, {Name: "vip", Type: Boolean}, {Name: "plan", Type: Enum, Values: []string{"free", "pro", "team"}},
		{Name: "signup", Type: Date}, {Name: "last_login", Type: DateTime}, {Name: "company", Type: Text}, {Name: "lang", Type: Text},
	}
}

func writeBenchCSV(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("email,name,city,country,score,orders,vip,plan,signup,last_login,company,lang,tags\n")
	cities := []string{"Taipei", "Paris", "Oslo", "Lima", "Quito", "Kyoto", "Rome"}
	plans := []string{"free", "pro", "team"}
	tags := []string{"vip", "beta", "news", "promo", "old"}
	for i := range n {
		fmt.Fprintf(w, "user%d@example%d.com,User %d,%s,C%d,%d.%d,%d,%v,%s,20%02d-%02d-%02d,2025-%02d-%02dT10:00:00Z,Company %d,l%d,%s;%s\n",
			i, i%1000, i, cities[i%7], i%50, i%100, i%10, i%37, i%3 == 0, plans[i%3], 10+i%15, 1+i%12, 1+i%28, 1+i%12, 1+i%28, i%5000, i%20, tags[i%5], tags[(i/5)%5])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// cpuSeconds is the user+system CPU time of this process (the import's
// cost independent of how loaded the machine is; PostgreSQL's own CPU is
// not included).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// peakRSS returns VmHWM of this process in MB.
func peakRSS() float64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func benchImport(b *testing.B, backend, csvPath string, rows int) {
	ctx := context.Background()
	opts := Options{ImportDir: b.TempDir()}
	if v := os.Getenv("AUDIENCE_BENCH_BATCH"); v != "" {
		opts.BatchSize, _ = strconv.Atoi(v) // rows per import transaction ([esp] import_batch)
	}
	s, a := benchStore(b, backend, opts)
	s.db.SetMaxIdleConns(16) // keep the PostgreSQL backends, whose CPU is read at the end
	f, err := os.Open(csvPath)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// Reset the peak RSS so it measures the import, not the CSV writer.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	cpu0 := cpuSeconds()
	start := time.Now()
	im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, f)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.RunImport(ctx, im.ID); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	cpu := cpuSeconds() - cpu0
	rss := peakRSS()
	serverCPU := s.serverCPU(ctx)
	im, _ = s.Import(ctx, im.ID)
	if im.Created != int64(rows) || im.Failed != 0 {
		b.Fatalf("import %+v", im)
	}
	expr := `city == "Taipei" && "vip" in tags && score > 20`
	n, err := s.Count(ctx, a.ID, expr) // warm the cache once
	if err != nil {
		b.Fatal(err)
	}
	const reps = 3
	ccpu0 := cpuSeconds()
	cstart := time.Now()
	for range reps {
		if _, err := s.Count(ctx, a.ID, expr); err != nil {
			b.Fatal(err)
		}
	}
	count := time.Since(cstart) / reps
	countCPU := (cpuSeconds() - ccpu0) / reps
	b.ReportMetric(float64(rows)/took.Seconds(), "rows/s")
	b.ReportMetric(took.Seconds(), "import_s")
	b.ReportMetric(rss, "peak_rss_MB")
	b.ReportMetric(cpu, "import_cpu_s")
	b.ReportMetric(count.Seconds(), "count_s")
	b.ReportMetric(countCPU, "count_cpu_s")
	b.ReportMetric(float64(n), "matched")
	if s.d == postgres {
		b.ReportMetric(serverCPU, "import_server_cpu_s")
	}
	b.Logf("%s: %d rows in %v (%.0f rows/s, %.1f s CPU in this process, %.1f s in PostgreSQL's backends), peak RSS %.0f MB; segment %q: %d in %v (%.3f s CPU in this process); load average %s",
		backend, rows, took, float64(rows)/took.Seconds(), cpu, serverCPU, rss, expr, n, count, countCPU, loadAverage())
	b.Logf("reproduce: AUDIENCE_BENCH_ROWS=%d AUDIENCE_BENCH_BACKEND=%s go test -run '^$' -bench ImportAndSegment -benchtime 1x -timeout 60m ./audience/", rows, backend)
}

// serverCPU is the CPU time (user+system, seconds) of the PostgreSQL
// backends serving this store's database, read from /proc (the server
// runs on this machine); 0 on SQLite, whose work is in this process.
func (s *Store) serverCPU(ctx context.Context) float64 {
	if s.d != postgres {
		return 0
	}
	rows, err := s.db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return 0
	}
	defer rows.Close()
	var total float64
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command (which is in parentheses): utime and
		// stime are the 12th and 13th of them, in clock ticks (100/s).
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			total += (u + st) / 100
		}
	}
	return total
}

func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// BenchmarkUpsertContact upserts single contacts (a create, then an
// update of the same address, alternating) into an audience that already
// holds AUDIENCE_BENCH_BASE (default 100,000) contacts, one transaction
// each as the API does, and reports the p50 and p99 latency:
//
//	go test -run '^$' -bench UpsertContact -benchtime 2000x ./audience/
func BenchmarkUpsertContact(b *testing.B) {
	csvPath, base := benchCSV(b, "AUDIENCE_BENCH_BASE", 100_000)
	eachBenchBackend(b, func(b *testing.B, backend string) {
		ctx := context.Background()
		s, a := benchStore(b, backend, Options{ImportDir: b.TempDir()})
		f, err := os.Open(csvPath)
		if err != nil {
			b.Fatal(err)
		}
		im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.RunImport(ctx, im.ID); err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		cpu0 := cpuSeconds()
		b.ResetTimer()
		for i := range b.N {
			in := ContactInput{Email: fmt.Sprintf("new%d@example.org", i/2), Name: ptr(fmt.Sprintf("New %d", i)),
				Fields: map[string]any{"city": "Taipei", "score": float64(i % 50), "vip": i%2 == 0}, Tags: []string{"vip", "api"}}
			t0 := time.Now()
			if _, _, err := s.UpsertContact(ctx, a.ID, in); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		cpu := cpuSeconds() - cpu0
		slices.Sort(lat)
		p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
		b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99_ms")
		b.ReportMetric(cpu/float64(b.N)*1e6, "cpu_us/op")
		b.Logf("%s: %d upserts over %d contacts: p50 %v, p99 %v, %.0f µs CPU each in this process; load average %s", backend, b.N, base, p(0.50), p(0.99), cpu/float64(b.N)*1e6, loadAverage())
		b.Logf("reproduce: AUDIENCE_BENCH_BACKEND=%s go test -run '^$' -bench UpsertContact -benchtime %dx ./audience/", backend, b.N)
	})
}
