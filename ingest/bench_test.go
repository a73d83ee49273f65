package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net/mail"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func BenchmarkParseMailbox(b *testing.B) {
	for _, s := range []string{"first.last+tag@sub.example.com", `"john doe"@example.com`, "ünï@exämple.com"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseMailbox(s, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuildMessage(b *testing.B) {
	from, _ := mail.ParseAddress("Zoë <a@example.org>")
	to, _ := mail.ParseAddress("b@example.com")
	c := composed{From: from, To: []*mail.Address{to}, Subject: "Grüße", Text: strings.Repeat("Hello there, ", 200),
		HTML: "<p>" + strings.Repeat("Hello <b>there</b>, ", 200) + "</p>", Date: time.Now(), MessageID: "1@x"}
	for b.Loop() {
		if _, err := buildMessage(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSMTPSubmit submits messages over loopback SMTP into the real
// queue (synced Pebble commits) from 20 concurrent client connections and
// reports accepted messages per second.
func BenchmarkSMTPSubmit(b *testing.B) {
	e := startSMTP(b, testSMTPConfig(), nil)
	msg := []byte(strings.Replace(simpleMsg, "Hello Bob.", strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 40), 1))
	b.SetParallelism(max(1, 20/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(msg)))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.Dial(e.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if err := c.Hello("bench.test"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := c.SendMail("a@example.org", []string{"b@example.com"}, strings.NewReader(string(msg))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSubmit compares one synced commit per message (Submit) with
// one per 100 messages (SubmitBatch, the campaign engine's path), single
// caller, real queue, no policy.
func BenchmarkSubmit(b *testing.B) {
	msg := []byte(strings.Replace(simpleMsg, "Hello Bob.", strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 40), 1))
	env := Envelope{From: "a@example.org", Rcpts: []string{"b@example.com"}, Source: "campaign"}
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := NewSubmitter(SubmitOptions{Spool: openQueue(b), Logger: slog.New(slog.DiscardHandler)})
			subs := make([]Submission, batch)
			for i := range subs {
				subs[i] = Submission{Envelope: env, Body: msg}
			}
			start := time.Now()
			n := 0
			for b.Loop() {
				if batch == 1 {
					if _, err := s.Submit(context.Background(), env, msg); err != nil {
						b.Fatal(err)
					}
				} else if _, err := s.SubmitBatch(context.Background(), subs); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
