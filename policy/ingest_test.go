package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/policy/domains"
	"github.com/petrel-mta/petrel/policy/suppress"
	"github.com/petrel-mta/petrel/queue"
)

// Engine is what ingest asks.
var _ ingest.Policy = (*Engine)(nil)

// TestThroughIngest runs the real SMTP submission server with Engine as
// its Policy and a real queue: suppressed recipients never reach the
// queue, an unregistered sender domain is refused at DATA, and the queued message carries
// List-Unsubscribe and a DKIM signature that verifies.
func TestThroughIngest(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.RequireDomainStatus = "usable" })
	info, err := f.e.AddDomain(context.Background(), "shop.test", "rsa", false)
	if err != nil {
		t.Fatal(err)
	}
	publish(f.dns, info, domains.KindSPF, domains.KindDKIM, domains.KindMX)
	f.e.RefreshDomains(context.Background())
	if err := f.e.Suppress("marketing", "carol@example.org", suppress.ReasonUnsubscribe, "test"); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Suppress("*", "erin@example.org", suppress.ReasonHardBounce, "test"); err != nil {
		t.Fatal(err)
	}

	q, err := queue.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	srv, err := ingest.NewSMTPServer(ingest.Options{Hostname: "mx.petrel.test", SMTP: f.e.cfg.SMTP, Spool: q, Policy: f.e, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	send := func(from string, rcpts []string, body string) (refused map[string]*smtp.SMTPError, dataErr error) {
		t.Helper()
		c, err := smtp.Dial(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail(from, nil); err != nil {
			t.Fatal(err)
		}
		refused = map[string]*smtp.SMTPError{}
		for _, r := range rcpts {
			var se *smtp.SMTPError
			if err := c.Rcpt(r, nil); errors.As(err, &se) {
				refused[r] = se
			} else if err != nil {
				t.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
		return refused, w.Close()
	}

	body := "From: News <news@shop.test>\nTo: dave@example.org\nSubject: Sale\nX-Petrel-Stream: marketing\n\nBuy now.\n"
	// erin is suppressed everywhere: refused at RCPT. carol only in
	// marketing, which the header selects after RCPT: dropped at DATA.
	refused, err := send("bounces@shop.test", []string{"carol@example.org", "erin@example.org", "dave@example.org"}, body)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if e := refused["erin@example.org"]; len(refused) != 1 || e == nil || e.Code != 550 || e.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("refused %v, want erin with 550 5.7.1", refused)
	}

	_, err = send("x@other.test", []string{"dave@example.org"}, strings.ReplaceAll(body, "news@shop.test", "news@other.test"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 26}) || !strings.Contains(se.Message, "other.test is not a registered sending domain") {
		t.Fatalf("unregistered From domain: %v", err)
	}

	rcpts, _, err := q.List(context.Background(), "", 10)
	if err != nil || len(rcpts) != 1 || rcpts[0].Addr != "dave@example.org" {
		t.Fatalf("queued %+v, %v", rcpts, err)
	}
	stored, err := q.Body(rcpts[0].MsgID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stored, []byte("List-Unsubscribe-Post: List-Unsubscribe=One-Click")) || bytes.Contains(stored, []byte("X-Petrel-Stream")) {
		t.Fatalf("stored message:\n%s", stored)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(stored), &dkim.VerifyOptions{LookupTXT: lookupTXT(t, f.dns.Addr)})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("stored message DKIM: %v %+v", err, vs)
	}
}
