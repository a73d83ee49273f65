package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/petrel-mta/petrel/config"
)

// Error limits of an SMTP session (Postfix's smtpd_hard_error_limit,
// smtpd_soft_error_limit and smtpd_error_sleep_time) and the per-client
// limit on failed AUTH across sessions. The defaults apply to an
// SMTPConfig built by hand; config.Default sets the same values.
const (
	defaultHardErrorLimit = 20
	defaultAuthBurst      = 10
	defaultAuthInterval   = time.Minute
	// maxSleepSteps caps an error delay at this many ErrorSleep steps.
	maxSleepSteps = 10
	// maxAuthClients bounds the per-client limiter map.
	maxAuthClients = 10000
)

// Reasons of petrel_smtp_auth_failures_total.
const (
	authUnknownUser = "unknown_user"
	authBadPassword = "bad_password"
	authBadAuthzID  = "bad_authzid"
	authMechanism   = "unsupported_mechanism"
	authProtocol    = "protocol"
	authRateLimited = "rate_limited"
)

// errAuthzMismatch is the reply to AUTH PLAIN with an authorization
// identity other than the user.
var errAuthzMismatch = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authorization identity must match the user"}

// limits holds the SMTP server's error and AUTH-failure limits.
type limits struct {
	hard, soft int
	sleep      time.Duration
	clients    *authClients

	failures    *prometheus.CounterVec
	disconnects *prometheus.CounterVec
}

func newLimits(c config.SMTPConfig, reg *prometheus.Registry) *limits {
	l := &limits{hard: c.HardErrorLimit, soft: c.SoftErrorLimit, sleep: c.ErrorSleep.Duration}
	if l.hard <= 0 {
		l.hard = defaultHardErrorLimit
	}
	burst, every := c.AuthFailureBurst, c.AuthFailureInterval.Duration
	if burst <= 0 {
		burst = defaultAuthBurst
	}
	if every <= 0 {
		every = defaultAuthInterval
	}
	l.clients = &authClients{limit: rate.Every(every), burst: burst, max: maxAuthClients, m: map[netip.Prefix]*rate.Limiter{}}
	if reg != nil {
		l.failures = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_auth_failures_total",
			Help: "Failed SMTP AUTH attempts by reason (unknown_user, bad_password, bad_authzid, unsupported_mechanism, protocol, rate_limited).",
		}, []string{"reason"}))
		l.disconnects = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_smtp_error_disconnects_total",
			Help: "SMTP sessions closed with 421 4.7.0 by reason (hard_error_limit, auth_rate_limit).",
		}, []string{"reason"}))
	}
	return l
}

// authClients rate-limits failed AUTH per client network. The map is
// bounded: when full, entries whose bucket has refilled (they hold no
// state) are dropped, and if none has, an arbitrary one.
type authClients struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Prefix]*rate.Limiter
}

// clientKey is the address an IPv4 client is limited by, or the /64 of an
// IPv6 one (which usually holds the whole site).
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	p, _ := ip.Prefix(ip.BitLen())
	return p
}

// blocked reports whether ip has no failed AUTH attempt left.
func (a *authClients) blocked(ip netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim, ok := a.m[clientKey(ip)]
	return ok && lim.TokensAt(now) < 1
}

// fail records a failed AUTH from ip; false means it was over the limit.
func (a *authClients) fail(ip netip.Addr, now time.Time) bool {
	k := clientKey(ip)
	a.mu.Lock()
	defer a.mu.Unlock()
	lim, ok := a.m[k]
	if !ok {
		if len(a.m) >= a.max {
			a.evict(now)
		}
		lim = rate.NewLimiter(a.limit, a.burst)
		a.m[k] = lim
	}
	return lim.AllowN(now, 1)
}

func (a *authClients) evict(now time.Time) {
	for k, lim := range a.m {
		if lim.TokensAt(now) >= float64(a.burst) {
			delete(a.m, k)
		}
	}
	for k := range a.m {
		if len(a.m) < a.max {
			return
		}
		delete(a.m, k)
	}
}

func (a *authClients) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

// Auth implements smtp.AuthSession: AUTH from a client over its failure
// limit is answered 421 4.7.0 and the connection closed before any
// credentials are read; every failure is logged, counted, delayed and
// counted against the session's and the client's limits.
func (se *session) Auth(mech string) (sasl.Server, error) {
	l := se.s.limits
	if l.clients.blocked(se.ip, se.s.opts.Now()) {
		se.authFailure(mech, authRateLimited)
		return nil, se.hangup("auth_rate_limit", "Too many failed authentications from your address, try again later")
	}
	srv, err := se.auth(mech)
	if err != nil {
		return nil, se.authFailed(mech, authMechanism, err)
	}
	return &limitedSASL{se: se, mech: mech, srv: srv}, nil
}

// limitedSASL reports the failures of the SASL exchange it wraps.
type limitedSASL struct {
	se   *session
	mech string
	srv  sasl.Server
}

func (l *limitedSASL) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := l.srv.Next(response)
	if err == nil {
		return challenge, done, nil
	}
	reason := authProtocol
	switch {
	case errors.Is(err, errAuthzMismatch):
		reason = authBadAuthzID
	case errors.Is(err, smtp.ErrAuthFailed):
		reason = authBadPassword
		if _, known := l.se.s.users[l.se.authUser]; !known {
			reason = authUnknownUser
		}
	}
	return nil, false, l.se.authFailed(l.mech, reason, err)
}

// authFailure logs and counts one failed AUTH (the password is never
// logged).
func (se *session) authFailure(mech, reason string) {
	se.s.log.Warn("smtp auth failed", "client", se.ip.String(), "mechanism", mech, "user", se.authUser,
		"reason", reason, "session_failures", se.authFails)
	if m := se.s.limits.failures; m != nil {
		m.WithLabelValues(reason).Inc()
	}
}

// authFailed handles a failed AUTH whose reply is err: it counts it for
// the session and the client, closes the connection when a limit is
// reached, and otherwise delays the reply by authFails × error_sleep.
func (se *session) authFailed(mech, reason string, err error) error {
	se.authFails++
	se.errs++
	se.authFailure(mech, reason)
	se.authUser = ""
	if !se.s.limits.clients.fail(se.ip, se.s.opts.Now()) {
		return se.hangup("auth_rate_limit", "Too many failed authentications from your address, try again later")
	}
	if se.errs >= se.s.limits.hard {
		return se.hangup("hard_error_limit", "Error: too many errors")
	}
	se.pause(se.authFails)
	return err
}

// countError counts a refused command (MAIL FROM, RCPT TO) against the
// session: at hard_error_limit the connection is closed, beyond
// soft_error_limit the reply is delayed.
func (se *session) countError(err error) error {
	if err == nil {
		return nil
	}
	se.errs++
	l := se.s.limits
	if se.errs >= l.hard {
		return se.hangup("hard_error_limit", "Error: too many errors")
	}
	if n := se.errs - l.soft; n > 0 {
		se.pause(n)
	}
	return err
}

// accepted forgives the session's errors other than failed AUTH once a
// message is queued (Postfix counts errors "without delivering mail").
func (se *session) accepted() { se.errs = se.authFails }

// pause sleeps steps × error_sleep (at most maxSleepSteps steps), or until
// the server gives up on shutdown.
func (se *session) pause(steps int) {
	d := se.s.limits.sleep * time.Duration(min(steps, maxSleepSteps))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-se.s.base.Done():
	}
}

// hangup answers 421 4.7.0 and closes the connection. go-smtp would write
// the returned error as the reply of the current command and keep the
// session, so the reply is written here, on the connection go-smtp uses
// (the TLS one after STARTTLS), before it is closed; go-smtp's own write
// of the returned error then fails and its read loop ends the session.
func (se *session) hangup(reason, text string) error {
	if m := se.s.limits.disconnects; m != nil {
		m.WithLabelValues(reason).Inc()
	}
	se.s.log.Warn("smtp session closed", "client", se.ip.String(), "reason", reason, "errors", se.errs, "auth_failures", se.authFails)
	reply := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: se.s.opts.Hostname + " " + text}
	c := se.conn.Conn()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "421 4.7.0 %s\r\n", reply.Message)
	c.Close()
	return reply
}
