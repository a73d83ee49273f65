package audience

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	rows := 1_000_000
	if v := os.Getenv("AUDIENCE_BENCH_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	csvPath := filepath.Join(b.TempDir(), "bench.csv")
	writeBenchCSV(b, csvPath, rows)
	for _, backend := range backends {
		if only := os.Getenv("AUDIENCE_BENCH_BACKEND"); only != "" && only != backend {
			continue
		}
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				benchImport(b, backend, csvPath, rows)
			}
		})
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
	s, err := Open(ctx, backendDSN(b, backend), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a, err := s.CreateAudience(ctx, Audience{Name: "bench", Fields: benchFields()})
	if err != nil {
		b.Fatal(err)
	}
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
	im, _ = s.Import(ctx, im.ID)
	if im.Created != int64(rows) || im.Failed != 0 {
		b.Fatalf("import %+v", im)
	}
	if s.d == sqlite {
		s.db.ExecContext(ctx, `ANALYZE`)
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
	b.Logf("%s: %d rows in %v (%.0f rows/s, %.1f s CPU in this process), peak RSS %.0f MB; segment %q: %d in %v (%.2f s CPU in this process)", backend, rows, took, float64(rows)/took.Seconds(), cpu, rss, expr, n, count, countCPU)
}
