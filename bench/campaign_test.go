package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// BenchmarkCampaignE2E sends a campaign through a real petreld (built
// from this tree) to the counting sink: N contacts (PETREL_BENCH_CONTACTS,
// default 100,000) imported over the API, a ~20 KB personalised HTML
// template (tracked, compliance footer, DKIM-signed by the verified
// sending domain), delivered through the queue to the sink, which shares
// the machine. Reported: messages/s first to last at the sink, petreld
// CPU per message, petreld peak RSS, and the transactional ack latency
// (SMTP submission, one message at a time, end of DATA to 250) p50/p99
// before and while the campaign runs (fair share).
//
//	go test -run '^$' -bench CampaignE2E -benchtime 1x -timeout 2h ./bench/
//	PETREL_BENCH_CONTACTS=1000000 go test -run '^$' -bench CampaignE2E -benchtime 1x -timeout 4h ./bench/
//
// PETREL_BENCH_PROFILE_DIR=DIR saves petreld's CPU profile (10 s) and
// heap profile taken during the send there.
func BenchmarkCampaignE2E(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("PETREL_BENCH_CONTACTS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	dir := b.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "petreld"), "../cmd/petreld").CombinedOutput(); err != nil {
		b.Fatalf("build petreld: %v %s", err, out)
	}
	dns, err := testnet.StartDNS()
	if err != nil {
		b.Fatal(err)
	}
	defer dns.Close()
	sink, err := StartSink(SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		b.Fatal(err)
	}
	p, err := StartPetreld(ctx, PetreldOptions{Binary: filepath.Join(dir, "petreld"), Dir: filepath.Join(dir, "run"), Relay: sink.Addr(),
		ExtraTOML: fmt.Sprintf("[dns]\nresolver = %q\n[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n", dns.Addr)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	if err := WaitListening(ctx, p.HTTPAddr, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	// The sending domain, verified through the test DNS.
	var info struct{ Records []struct{ Zone string } }
	if err := p.API(ctx, "POST", "/api/v1/domains", map[string]any{"domain": "shop.test"}, &info); err != nil {
		b.Fatal(err)
	}
	for _, r := range info.Records {
		if r.Zone != "" {
			dns.Add(r.Zone)
		}
	}
	if err := p.API(ctx, "POST", "/api/v1/domains/shop.test/check", nil, nil); err != nil {
		b.Fatal(err)
	}
	aid := importBenchContacts(ctx, b, p, n)
	ackBefore := ackLatencies(ctx, b, p.SMTPAddr, 300, nil)

	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("e2e-%d", i)
		spec := map[string]any{"id": id, "audience": aid, "from": "news@shop.test", "from_name": "Shop",
			"subject": "%first_name|Hello%, this week in %city|town%", "html": newsletterHTML(b), "page_size": 500,
			"postal_address": "Shop Ltd, 1 Harbour Road, Taipei"}
		if err := p.API(ctx, "POST", "/api/v1/campaigns", spec, nil); err != nil {
			b.Fatal(err)
		}
		base := sink.Stats().Messages
		cpu0, _ := p.CPU()
		if err := p.API(ctx, "POST", "/api/v1/campaigns/"+id+"/send", nil, nil); err != nil {
			b.Fatal(err)
		}
		var peak int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if rss, _, err := p.Memory(); err == nil {
					peak = max(peak, rss)
				}
			}
		}()
		if pd := os.Getenv("PETREL_BENCH_PROFILE_DIR"); pd != "" {
			// petreld's CPU (10 s) and heap profiles during the send.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, q := range []string{"profile?seconds=10", "heap"} {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/debug/pprof/"+q, nil)
					req.Header.Set("Authorization", "Bearer "+p.Key) // profiling needs the API key
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Logf("profile: %v", err)
						return
					}
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					name := "petreld-campaign-" + strings.SplitN(q, "?", 2)[0] + ".pprof"
					if err := os.WriteFile(filepath.Join(pd, name), raw, 0o644); err != nil {
						b.Logf("profile: %v", err)
					}
				}
			}()
		}
		// Transactional mail while the campaign runs: one at a time.
		ackDuring := ackLatencies(ctx, b, p.SMTPAddr, 300, func() bool { return sink.Stats().Messages-base >= int64(n) })
		wctx, cancel := context.WithTimeout(ctx, 4*time.Hour)
		st, err := waitCount(wctx, func() (SinkStats, bool) { s := sink.Stats(); return s, s.Messages-base >= int64(n+len(ackDuring)) })
		cancel()
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatalf("sink: %v (%d of %d)", err, st.Messages-base, n)
		}
		cpu1, _ := p.CPU()
		el := st.Last.Sub(st.First)
		if sink.Stats().First.IsZero() || el <= 0 {
			b.Fatal("no timing at the sink")
		}
		rate := float64(n) / el.Seconds()
		cpuPer := (cpu1 - cpu0) / time.Duration(n)
		p50b, p99b := percentiles(ackBefore)
		p50d, p99d := percentiles(ackDuring)
		b.Logf("campaign_e2e contacts=%d msgs_per_s=%.0f (first to last at the sink, %v) petreld_cpu_per_msg=%v petreld_peak_rss_mb=%d "+
			"transactional_ack_p50=%v p99=%v idle, p50=%v p99=%v during the campaign (%d acks)",
			n, rate, el.Round(time.Millisecond), cpuPer, peak>>20, p50b, p99b, p50d, p99d, len(ackDuring))
		b.ReportMetric(rate, "msgs/s")
		b.ReportMetric(float64(cpuPer.Microseconds()), "petreld-cpu-µs/msg")
		b.ReportMetric(float64(peak>>20), "peak-RSS-MB")
		b.ReportMetric(float64(p99b.Microseconds())/1000, "ack-p99-idle-ms")
		b.ReportMetric(float64(p99d.Microseconds())/1000, "ack-p99-campaign-ms")
	}
}

// importBenchContacts creates an audience (field city) and imports n
// consented contacts c<i>@example.test into it.
func importBenchContacts(ctx context.Context, b *testing.B, p *Petreld, n int) int64 {
	var a struct{ ID int64 }
	if err := p.API(ctx, "POST", "/api/v1/audiences", map[string]any{"name": "bench", "fields": []map[string]any{{"name": "city", "type": "text"}}}, &a); err != nil {
		b.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("email,name,city\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&csv, "c%d@example.test,Contact %d,%s\n", i, i, []string{"Taipei", "Oslo", ""}[i%3])
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("http://%s/api/v1/audiences/%d/imports?consent_purpose=marketing&consent_source=import", p.HTTPAddr, a.ID), strings.NewReader(csv.String()))
	req.Header.Set("Authorization", "Bearer "+p.Key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var imp struct{ ID int64 }
	if resp.StatusCode/100 != 2 || json.Unmarshal(body, &imp) != nil {
		b.Fatalf("import: %s %s", resp.Status, body)
	}
	for deadline := time.Now().Add(2 * time.Hour); ; {
		var st struct{ State string }
		if err := p.API(ctx, "GET", fmt.Sprintf("/api/v1/imports/%d", imp.ID), nil, &st); err != nil {
			b.Fatal(err)
		}
		if st.State == "done" {
			return a.ID
		}
		if time.Now().After(deadline) {
			b.Fatalf("import not done: %s", st.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ackLatencies submits up to n transactional messages over one SMTP
// session, one at a time (10 ms apart), until done (nil: all n) returns
// true, and returns each message's time from the end of DATA to the 250.
func ackLatencies(ctx context.Context, b *testing.B, addr string, n int, done func() bool) []time.Duration {
	c, err := smtp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("bench.local"); err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for i := 0; i < n && ctx.Err() == nil && (done == nil || !done()); i++ {
		if err := c.Mail("app@shop.test"); err != nil {
			b.Fatal(err)
		}
		if err := c.Rcpt(fmt.Sprintf("t%d@example.test", i)); err != nil {
			b.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(w, "From: app@shop.test\r\nTo: t%d@example.test\r\nSubject: Your code %d\r\nX-Petrel-Stream: transactional\r\n\r\nYour login code is %d.\r\n", i, i, i)
		start := time.Now()
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// newsletterHTML is the ~20 KB personalised newsletter the campaign
// package's BenchmarkCampaignSend sends.
func newsletterHTML(b *testing.B) string {
	raw, err := os.ReadFile("../campaign/testdata/newsletter-20kb.html")
	if err != nil {
		b.Fatal(err)
	}
	return string(raw)
}
