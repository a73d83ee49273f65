package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// reply is one SMTP reply to a RCPT (or the session-level failure that
// stood in for it).
type reply struct {
	Code     int
	Enhanced string
	Text     string
}

// sessionFailure says why a session could not ask about an address.
type sessionFailure struct {
	// Kind is an SMTP stage status: StatusUnreachable, StatusTimeout,
	// StatusBlocked, StatusTemporary or StatusError.
	Kind   string
	Detail string
	Reply  reply
}

// batchOutcome is what probing one domain's addresses produced.
type batchOutcome struct {
	// Replies holds the final RCPT reply per address (key Normalized).
	Replies map[string]reply
	// Attempts counts RCPT attempts per address (greylist retries).
	Attempts map[string]int
	// Host is the MX host that answered (or last tried).
	Host string
	// Failed holds addresses no MX host could be asked about.
	Failed map[string]sessionFailure
	// CatchAll is set when the random-address test ran.
	CatchAll *bool
	// UTF8Unsupported lists addresses skipped because the server lacks
	// SMTPUTF8.
	UTF8Unsupported map[string]bool
}

// probeBatch asks the MX hosts of one domain about addrs (all of that
// domain), best preference first, in as few sessions as rcpt_per_session
// allows, then tests catch-all with a random local part in the same
// session. 4xx replies are retried per greylist_retries. It never sends
// DATA.
func (v *Verifier) probeBatch(ctx context.Context, domain string, hosts []MXHost, addrs []Address, wantCatchAll bool) batchOutcome {
	out := batchOutcome{Replies: map[string]reply{}, Attempts: map[string]int{},
		Failed: map[string]sessionFailure{}, UTF8Unsupported: map[string]bool{}}
	pending := addrs
	for round := 0; ; round++ {
		pending = v.probeHosts(ctx, domain, hosts, pending, wantCatchAll && out.CatchAll == nil, &out)
		// Collect 4xx answers for a greylist retry.
		var retry []Address
		for _, a := range pending {
			r, ok := out.Replies[a.Normalized]
			if ok && r.Code >= 400 && r.Code < 500 && !isFullInbox(r) {
				retry = append(retry, a)
			}
		}
		if len(retry) == 0 || round >= v.cfg.GreylistRetries {
			return out
		}
		v.log.Debug("verify: greylisted, retrying", "domain", domain, "addresses", len(retry), "delay", v.cfg.GreylistDelay.Duration)
		select {
		case <-ctx.Done():
			return out
		case <-time.After(v.cfg.GreylistDelay.Duration):
		}
		pending = retry
		wantCatchAll = false
	}
}

// probeHosts runs sessions over hosts until every address in pending has a
// reply or the hosts are exhausted. It returns the addresses that got a
// reply in this call (for greylist bookkeeping).
func (v *Verifier) probeHosts(ctx context.Context, domain string, hosts []MXHost, pending []Address, wantCatchAll bool, out *batchOutcome) []Address {
	var answered []Address
	var lastFail sessionFailure
	tried := 0
	for _, h := range hosts {
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		if tried >= v.cfg.MaxMXHosts {
			break
		}
		tried++
		for _, ip := range h.IPs {
			if len(pending) == 0 {
				break
			}
			out.Host = h.Host
			for len(pending) > 0 {
				chunk := pending[:min(len(pending), v.cfg.RcptPerSession)]
				got, fail := v.session(ctx, domain, h.Host, ip, chunk, wantCatchAll, out)
				answered = append(answered, chunk[:got]...)
				pending = pending[got:]
				if got > 0 {
					wantCatchAll = false
				}
				if fail != nil {
					lastFail = *fail
					break
				}
			}
			if len(pending) == 0 {
				break
			}
		}
	}
	if len(pending) > 0 {
		if lastFail.Kind == "" {
			lastFail = sessionFailure{Kind: StatusUnreachable, Detail: "no MX host address to connect to"}
		}
		if ctx.Err() != nil {
			lastFail = sessionFailure{Kind: StatusTimeout, Detail: ctx.Err().Error()}
		}
		for _, a := range pending {
			out.Failed[a.Normalized] = lastFail
		}
	}
	return answered
}

// session runs one SMTP session to ip and asks about chunk in order. It
// returns how many addresses (from the front of chunk) got a reply, and a
// failure when the session ended before all of them did.
func (v *Verifier) session(ctx context.Context, domain, host string, ip netip.Addr, chunk []Address, wantCatchAll bool, out *batchOutcome) (int, *sessionFailure) {
	release, egress, err := v.polite.acquire(ctx, domain, host)
	if err != nil {
		kind := StatusBlocked
		if ctx.Err() != nil {
			kind = StatusTimeout
		}
		return 0, &sessionFailure{Kind: kind, Detail: "politeness: " + err.Error()}
	}
	defer release()
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(v.smtpPort))
	d := net.Dialer{Timeout: v.cfg.ConnectTimeout.Duration}
	if egress.LocalIP != "" {
		// Probe from the source policy chose, like real mail would.
		if lip, err := netip.ParseAddr(egress.LocalIP); err == nil && lip.Is4() == ip.Is4() {
			d.LocalAddr = &net.TCPAddr{IP: lip.AsSlice()}
		}
	}
	helo := v.helo
	if egress.EHLO != "" && v.cfg.HeloName == "" {
		helo = egress.EHLO
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, classifyNetErr(err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	c.CommandTimeout = v.cfg.CommandTimeout.Duration
	defer c.Close()
	observe := func(r reply) { v.polite.observe(domain, host, r) }
	if err := c.Hello(helo); err != nil {
		f := failureFrom(err, "greeting/EHLO")
		observe(f.Reply)
		return 0, f
	}
	utf8OK, _ := c.Extension("SMTPUTF8")
	needUTF8 := false
	for _, a := range chunk {
		needUTF8 = needUTF8 || a.SMTPUTF8
	}
	if err := c.Mail(v.sender, &smtp.MailOptions{UTF8: needUTF8 && utf8OK}); err != nil {
		f := failureFrom(err, "MAIL FROM")
		observe(f.Reply)
		return 0, f
	}
	n := 0
	inTx := 0 // recipients asked about in the current transaction
	accepted := false
	for _, a := range chunk {
		if a.SMTPUTF8 && !utf8OK {
			out.UTF8Unsupported[a.Normalized] = true
			n++
			continue
		}
		r, err := rcpt(c, a.Normalized)
		if err != nil {
			return n, failureFrom(err, "RCPT TO")
		}
		if isTooManyRecipients(r) {
			// The transaction's recipient limit: this address was not
			// asked about. Start a new transaction and ask again; a
			// limit hit on the first recipient ends the session (the
			// rest go to a new one).
			if inTx == 0 {
				return n, &sessionFailure{Kind: StatusTemporary, Detail: "RCPT TO: " + r.Text, Reply: r}
			}
			if err := c.Reset(); err != nil {
				return n, failureFrom(err, "RSET")
			}
			if err := c.Mail(v.sender, &smtp.MailOptions{UTF8: needUTF8 && utf8OK}); err != nil {
				return n, failureFrom(err, "MAIL FROM")
			}
			inTx = 0
			if r, err = rcpt(c, a.Normalized); err != nil {
				return n, failureFrom(err, "RCPT TO")
			}
			if isTooManyRecipients(r) {
				return n, &sessionFailure{Kind: StatusTemporary, Detail: "RCPT TO: " + r.Text, Reply: r}
			}
		}
		inTx++
		observe(r)
		out.Replies[a.Normalized] = r
		out.Attempts[a.Normalized]++
		accepted = accepted || r.Code/100 == 2
		n++
	}
	if wantCatchAll && accepted {
		random := randomLocal() + "@" + domain
		r, err := rcpt(c, random)
		if err == nil && isTooManyRecipients(r) && c.Reset() == nil && c.Mail(v.sender, nil) == nil {
			r, err = rcpt(c, random)
		}
		if err == nil && !isTooManyRecipients(r) {
			ca := r.Code/100 == 2
			out.CatchAll = &ca
		}
	}
	// Polite ending; errors here change nothing already learnt.
	_ = c.Reset()
	_ = c.Quit()
	return n, nil
}

// rcpt sends RCPT TO and returns the server's reply; err is set only when
// the session itself broke (I/O, timeout).
func rcpt(c *smtp.Client, to string) (reply, error) {
	err := c.Rcpt(to, nil)
	if err == nil {
		return reply{Code: 250}, nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 200 {
		return replyOf(se), nil
	}
	return reply{}, err
}

func replyOf(se *smtp.SMTPError) reply {
	r := reply{Code: se.Code, Text: strings.TrimSpace(se.Message)}
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode[0] > 0 {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return r
}

// failureFrom turns a session-level error into a failure kind.
func failureFrom(err error, stage string) *sessionFailure {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 400 {
		r := replyOf(se)
		kind := StatusBlocked
		if se.Code < 500 {
			kind = StatusTemporary
		}
		return &sessionFailure{Kind: kind, Detail: stage + ": " + r.Text, Reply: r}
	}
	f := classifyNetErr(err)
	f.Detail = stage + ": " + f.Detail
	return f
}

// classifyNetErr separates refused/unreachable from timeouts.
func classifyNetErr(err error) *sessionFailure {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return &sessionFailure{Kind: StatusTimeout, Detail: err.Error()}
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return &sessionFailure{Kind: StatusUnreachable, Detail: err.Error()}
	}
	return &sessionFailure{Kind: StatusError, Detail: err.Error()}
}

// randomLocal returns a local part no real mailbox has.
func randomLocal() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "petrel-verify-" + hex.EncodeToString(b)
}
