package shaping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/mta"
)

// This file is a small in-test sender standing in for delivery: it looks
// up MX hosts in a real (loopback) DNS server, asks the Shaper for
// permits and speaks real SMTP to testnet MX servers.

// job is one message to one recipient.
type job struct {
	rcpt   string
	stream string
}

func (j job) domain() string { return j.rcpt[strings.LastIndexByte(j.rcpt, '@')+1:] }

// result counts what happened to the jobs.
type result struct {
	mu        sync.Mutex
	delivered int
	deferred  int // *mta.PolicyError without Bounce
	bounced   int // *mta.PolicyError with Bounce
	rejected  int // remote 4xx/5xx
	permits   []mta.ConnPermit
	firstErr  error
}

func (r *result) add(f func(r *result)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

// net is the loopback world of one test: DNS and MX hosts by name.
type testWorld struct {
	t   *testing.T
	dns *testnet.DNS
	res *dns.Resolver
	mx  map[string]*testnet.MX // MX host name -> server
}

func newWorld(t *testing.T) *testWorld {
	t.Helper()
	d, err := testnet.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	res, err := dns.NewResolver(d.Addr, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testWorld{t: t, dns: d, res: res, mx: map[string]*testnet.MX{}}
}

// addMX starts an MX server named host serving domains.
func (w *testWorld) addMX(host string, script testnet.MXScript, domains ...string) *testnet.MX {
	w.t.Helper()
	m, err := testnet.StartMX(testnet.MXOptions{Domain: host, Script: script})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { m.Close() })
	w.mx[host] = m
	w.dns.Add(host + ". 300 IN A 127.0.0.1")
	for _, d := range domains {
		w.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 %s.", d, host))
	}
	return m
}

// send delivers jobs with workers goroutines. Each worker takes a
// connection permit for the next job's destination, then sends up to
// MaxMessages jobs on it (asking AcquireMessage before each), reporting
// every reply to Observe.
func (w *testWorld) send(ctx context.Context, sh *Shaper, workers int, jobs []job) *result {
	ch := make(chan job, len(jobs))
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	res := &result{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, ok := <-ch
				if !ok {
					return
				}
				if err := w.connection(ctx, sh, j, ch, res); err != nil {
					res.add(func(r *result) {
						if r.firstErr == nil {
							r.firstErr = err
						}
					})
					return
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// classify counts a policy refusal; it returns false for other errors.
func classify(err error, res *result) bool {
	var pe *mta.PolicyError
	if !errors.As(err, &pe) {
		return false
	}
	res.add(func(r *result) {
		if pe.Bounce {
			r.bounced++
		} else {
			r.deferred++
		}
	})
	return true
}

// drainConn waits for the server to close the connection before closing
// it, so the MX has finished its session (and counted the connection as
// gone) before the connection permit is released.
type drainConn struct{ net.Conn }

func (d drainConn) Close() error {
	d.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, d.Conn)
	return d.Conn.Close()
}

// connection runs one SMTP connection starting with job first.
func (w *testWorld) connection(ctx context.Context, sh *Shaper, first job, more <-chan job, res *result) error {
	mxs, err := w.res.LookupMX(ctx, first.domain())
	if err != nil {
		return err
	}
	host := mxs[0].Host
	m := w.mx[host]
	if m == nil {
		return fmt.Errorf("no test MX for %s", host)
	}
	dest := func(j job) mta.Dest {
		return mta.Dest{Domain: j.domain(), MXHost: host, Stream: j.stream}
	}
	permit, err := sh.AcquireConn(ctx, dest(first))
	if err != nil {
		if classify(err, res) {
			return nil
		}
		return err
	}
	defer permit.Release()
	res.add(func(r *result) { r.permits = append(r.permits, permit) })
	dialer := net.Dialer{Timeout: 5 * time.Second}
	if permit.Egress.LocalIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(permit.Egress.LocalIP)}
	}
	conn, err := dialer.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(drainConn{conn})
	defer c.Close()
	if err := c.Hello(permit.Egress.EHLO); err != nil {
		return err
	}
	j, sent := first, 0
	for {
		d := dest(j)
		if err := sh.AcquireMessage(ctx, d, permit.Egress.Name); err != nil {
			if !classify(err, res) {
				return err
			}
		} else {
			err := c.SendMail("sender@petrel.test", []string{j.rcpt},
				strings.NewReader("Subject: t\r\n\r\nhello\r\n"))
			var se *smtp.SMTPError
			switch {
			case err == nil:
				sh.Observe(d, permit.Egress.Name, 250, "2.0.0", "OK")
				res.add(func(r *result) { r.delivered++ })
			case errors.As(err, &se):
				enh := ""
				if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
					enh = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
				}
				sh.Observe(d, permit.Egress.Name, se.Code, enh, se.Message)
				res.add(func(r *result) { r.rejected++ })
				if err := c.Reset(); err != nil {
					return nil // the server closed the connection
				}
			default:
				return err
			}
		}
		sent++
		if permit.MaxMessages > 0 && sent >= permit.MaxMessages {
			break
		}
		var ok bool
		if j, ok = <-more; !ok {
			break
		}
	}
	return c.Quit()
}
