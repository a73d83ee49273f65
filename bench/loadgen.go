package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SMTPLoad describes an SMTP load: Messages messages of about Size bytes
// with Recipients recipients each, sent over Sessions concurrent
// connections.
type SMTPLoad struct {
	// Addr is the server's "host:port".
	Addr string
	// Sessions is the number of concurrent connections (default 1).
	Sessions int
	// Messages is the total number of messages.
	Messages int
	// Size is the approximate size of each message in bytes (default 4096).
	Size int
	// Recipients per message (default 1).
	Recipients int
	// PerSession is how many messages one connection sends before QUIT
	// and a new connection; 0 means no limit.
	PerSession int
	// From is the envelope and header sender (default bench@bench.test).
	From string
	// RcptDomain is the recipients' domain (default sink.test).
	RcptDomain string
	// Helo is the EHLO name (default loadgen.bench.test).
	Helo string
	// StartTLS upgrades every connection with STARTTLS; TLSConfig is used
	// for the handshake (default: InsecureSkipVerify for loopback tests).
	StartTLS  bool
	TLSConfig *tls.Config
	// AuthUser and AuthPass, when set, authenticate every connection
	// with AUTH PLAIN (after STARTTLS when StartTLS is set).
	AuthUser, AuthPass string
	// NoPipelining sends MAIL/RCPT/DATA one at a time even when the
	// server offers PIPELINING.
	NoPipelining bool
	// Timeout bounds each read or write (default 60s).
	Timeout time.Duration
	// Rate, when > 0, paces the load at that many messages per second
	// over all sessions (message i is not sent before start + i/Rate);
	// 0 sends as fast as the server answers.
	Rate float64
}

func (o *SMTPLoad) defaults() {
	if o.Sessions <= 0 {
		o.Sessions = 1
	}
	if o.Size <= 0 {
		o.Size = 4096
	}
	if o.Recipients <= 0 {
		o.Recipients = 1
	}
	if o.From == "" {
		o.From = "bench@bench.test"
	}
	if o.RcptDomain == "" {
		o.RcptDomain = "sink.test"
	}
	if o.Helo == "" {
		o.Helo = "loadgen.bench.test"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback benchmark peers use throw-away certificates
	}
}

// LoadResult is the outcome of a load run. Latencies holds one entry per
// acknowledged message: for SMTP the time from the end of DATA to the
// server's final reply, for HTTP the whole request.
type LoadResult struct {
	Accepted   int64
	Recipients int64
	TempFailed int64
	PermFailed int64
	Errors     int64
	Start, End time.Time
	Latencies  []time.Duration
	// FirstErr is the first connection or protocol error met, if any.
	FirstErr error
}

// Duration is End - Start.
func (r *LoadResult) Duration() time.Duration { return r.End.Sub(r.Start) }

type resultCollector struct {
	mu  sync.Mutex
	res LoadResult
}

func (c *resultCollector) merge(w *LoadResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Accepted += w.Accepted
	c.res.Recipients += w.Recipients
	c.res.TempFailed += w.TempFailed
	c.res.PermFailed += w.PermFailed
	c.res.Errors += w.Errors
	c.res.Latencies = append(c.res.Latencies, w.Latencies...)
	if c.res.FirstErr == nil {
		c.res.FirstErr = w.FirstErr
	}
}

// RunSMTP sends the load and returns what the server answered. It returns
// an error only for bad options or a cancelled ctx; per-message failures
// are counted in the result.
func RunSMTP(ctx context.Context, o SMTPLoad) (*LoadResult, error) {
	o.defaults()
	if o.Addr == "" {
		return nil, errors.New("loadgen: no address")
	}
	var next atomic.Int64
	var col resultCollector
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.Sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := smtpWorker(ctx, &o, w, &next, start)
			col.merge(r)
		}()
	}
	wg.Wait()
	col.res.Start, col.res.End = start, time.Now()
	if err := ctx.Err(); err != nil {
		return &col.res, fmt.Errorf("loadgen: %w", err)
	}
	return &col.res, nil
}

// smtpWorker claims message numbers from next until all are sent.
func smtpWorker(ctx context.Context, o *SMTPLoad, worker int, next *atomic.Int64, start time.Time) *LoadResult {
	res := &LoadResult{}
	f := newMessageFactory(o.From, o.Size)
	buf := make([]byte, 0, o.Size+512)
	var c *clientConn
	defer func() {
		if c != nil {
			c.quit()
		}
	}()
	sent := 0
	consecutiveErrs := 0
	for ctx.Err() == nil {
		i := int(next.Add(1) - 1)
		if i >= o.Messages {
			return res
		}
		if o.Rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return res
				case <-t.C:
				}
			}
		}
		if c == nil || (o.PerSession > 0 && sent >= o.PerSession) {
			if c != nil {
				c.quit()
				c = nil
			}
			var err error
			c, err = dialSMTP(ctx, o)
			if err != nil {
				res.Errors++
				if res.FirstErr == nil {
					res.FirstErr = err
				}
				consecutiveErrs++
				if consecutiveErrs > 20 {
					return res
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			sent = 0
		}
		buf = f.appendMessage(buf[:0], i, worker, recipient(o.RcptDomain, i, 0))
		code, lat, err := c.send(o, i, buf)
		sent++
		switch {
		case err != nil:
			res.Errors++
			if res.FirstErr == nil {
				res.FirstErr = err
			}
			c.close()
			c = nil
			consecutiveErrs++
			if consecutiveErrs > 20 {
				return res
			}
			continue
		case code/100 == 2:
			res.Accepted++
			res.Recipients += int64(o.Recipients)
			res.Latencies = append(res.Latencies, lat)
		case code/100 == 4:
			res.TempFailed++
		default:
			res.PermFailed++
		}
		consecutiveErrs = 0
	}
	return res
}

// clientConn is one SMTP client connection of the load generator. It is
// hand-written rather than go-smtp's client because it pipelines
// MAIL/RCPT/DATA (RFC 2920), which go-smtp's client does not.
type clientConn struct {
	nc         net.Conn
	r          *textproto.Reader
	w          *bufio.Writer
	pipelining bool
	timeout    time.Duration
}

func dialSMTP(ctx context.Context, o *SMTPLoad) (*clientConn, error) {
	d := net.Dialer{Timeout: o.Timeout}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", o.Addr, err)
	}
	c := &clientConn{nc: nc, timeout: o.Timeout}
	c.setIO(nc)
	if err := c.expect(220); err != nil {
		c.close()
		return nil, fmt.Errorf("loadgen: greeting: %w", err)
	}
	caps, err := c.ehlo(o.Helo)
	if err != nil {
		c.close()
		return nil, err
	}
	if o.StartTLS {
		if _, ok := caps["STARTTLS"]; !ok {
			c.close()
			return nil, errors.New("loadgen: server does not offer STARTTLS")
		}
		if err := c.cmd(220, "STARTTLS"); err != nil {
			c.close()
			return nil, fmt.Errorf("loadgen: STARTTLS: %w", err)
		}
		cfg := o.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(o.Addr)
		}
		tc := tls.Client(nc, cfg)
		_ = tc.SetDeadline(time.Now().Add(o.Timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.close()
			return nil, fmt.Errorf("loadgen: TLS handshake: %w", err)
		}
		c.nc = tc
		c.setIO(tc)
		if caps, err = c.ehlo(o.Helo); err != nil {
			c.close()
			return nil, err
		}
	}
	if o.AuthUser != "" {
		tok := base64.StdEncoding.EncodeToString([]byte("\x00" + o.AuthUser + "\x00" + o.AuthPass))
		if err := c.cmd(235, "AUTH PLAIN "+tok); err != nil {
			c.close()
			return nil, fmt.Errorf("loadgen: AUTH: %w", err)
		}
	}
	_, c.pipelining = caps["PIPELINING"]
	c.pipelining = c.pipelining && !o.NoPipelining
	return c, nil
}

func (c *clientConn) setIO(nc net.Conn) {
	c.r = textproto.NewReader(bufio.NewReaderSize(nc, 4096))
	c.w = bufio.NewWriterSize(nc, 32<<10)
}

func (c *clientConn) deadline() { _ = c.nc.SetDeadline(time.Now().Add(c.timeout)) }

// reply reads one (possibly multi-line) reply.
func (c *clientConn) reply() (int, string, error) {
	code, msg, err := c.r.ReadResponse(0)
	if err != nil {
		return 0, "", fmt.Errorf("loadgen: reading reply: %w", err)
	}
	return code, msg, nil
}

func (c *clientConn) expect(want int) error {
	c.deadline()
	code, msg, err := c.reply()
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("loadgen: got %d %s, want %d", code, msg, want)
	}
	return nil
}

func (c *clientConn) cmd(want int, line string) error {
	c.deadline()
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("loadgen: write: %w", err)
	}
	return c.expect(want)
}

func (c *clientConn) ehlo(name string) (map[string]string, error) {
	c.deadline()
	fmt.Fprintf(c.w, "EHLO %s\r\n", name)
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("loadgen: write: %w", err)
	}
	code, msg, err := c.reply()
	if err != nil {
		return nil, err
	}
	if code != 250 {
		return nil, fmt.Errorf("loadgen: EHLO: %d %s", code, msg)
	}
	return parseEHLO(msg), nil
}

// parseEHLO turns an EHLO reply text (lines joined by "\n", first line the
// greeting) into keyword → parameters.
func parseEHLO(msg string) map[string]string {
	caps := map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw != "" {
			caps[strings.ToUpper(kw)] = params
		}
	}
	return caps
}

// send runs one transaction for message i and returns the final reply
// code and the latency of the end-of-data acknowledgement. A code
// other than 2xx from MAIL, every RCPT or DATA is returned as the result
// (the transaction is reset); err is for broken connections.
func (c *clientConn) send(o *SMTPLoad, i int, msg []byte) (int, time.Duration, error) {
	c.deadline()
	cmds := 0
	c.w.WriteString("MAIL FROM:<")
	c.w.WriteString(o.From)
	c.w.WriteString(">\r\n")
	cmds++
	if !c.pipelining {
		if code, err := c.flushRead(); err != nil || code/100 != 2 {
			return c.abort(code, err)
		}
		cmds = 0
	}
	okRcpts := 0
	lastBad := 0
	for j := 0; j < o.Recipients; j++ {
		c.w.WriteString("RCPT TO:<")
		c.w.WriteString(recipient(o.RcptDomain, i, j))
		c.w.WriteString(">\r\n")
		if !c.pipelining {
			code, err := c.flushRead()
			if err != nil {
				return 0, 0, err
			}
			if code/100 == 2 {
				okRcpts++
			} else {
				lastBad = code
			}
		} else {
			cmds++
		}
	}
	if !c.pipelining && okRcpts == 0 {
		return c.abort(lastBad, nil)
	}
	c.w.WriteString("DATA\r\n")
	cmds++
	if err := c.w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("loadgen: write: %w", err)
	}
	// Read the pipelined replies: MAIL, RCPT..., DATA (or only DATA).
	var dataCode int
	for k := 0; k < cmds; k++ {
		code, _, err := c.reply()
		if err != nil {
			return 0, 0, err
		}
		isData := k == cmds-1
		switch {
		case isData:
			dataCode = code
		case c.pipelining && k == 0:
			if code/100 != 2 {
				lastBad = code
			}
		default:
			if code/100 == 2 {
				okRcpts++
			} else {
				lastBad = code
			}
		}
	}
	if dataCode != 354 {
		if lastBad == 0 {
			lastBad = dataCode
		}
		return c.abort(lastBad, nil)
	}
	c.w.Write(msg)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("loadgen: write: %w", err)
	}
	t0 := time.Now()
	code, _, err := c.reply()
	if err != nil {
		return 0, 0, err
	}
	return code, time.Since(t0), nil
}

func (c *clientConn) flushRead() (int, error) {
	if err := c.w.Flush(); err != nil {
		return 0, fmt.Errorf("loadgen: write: %w", err)
	}
	code, _, err := c.reply()
	return code, err
}

// abort resets a failed transaction and reports its code.
func (c *clientConn) abort(code int, err error) (int, time.Duration, error) {
	if err != nil {
		return 0, 0, err
	}
	if code == 0 {
		code = 554
	}
	if e := c.cmd(250, "RSET"); e != nil {
		return 0, 0, e
	}
	return code, 0, nil
}

func (c *clientConn) quit() {
	_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		_, _, _ = c.reply()
	}
	c.close()
}

func (c *clientConn) close() { _ = c.nc.Close() }
