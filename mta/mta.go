// Package mta owns the vocabulary that several stages of the MTA speak:
// where a connection goes (Dest), where it leaves from (Egress), how it
// uses TLS (TLSMode), policy's permission to connect (ConnPermit) and its
// refusal (PolicyError), and the interfaces delivery asks policy through
// (Shaper and its optional extensions, Suppressor).
//
// It is the bottom of the import graph (ARCHITECTURE.md): it imports no
// other Petrel package, so policy, delivery, verify and events can share
// these types without importing each other. Delivery asks, policy answers
// (invariant 6); nil Shaper or Suppressor means unlimited / nothing
// suppressed.
package mta

import (
	"context"
	"fmt"
	"time"
)

// Dest identifies where a connection goes.
type Dest struct {
	// Domain is the lower-cased recipient domain.
	Domain string
	// MXHost is the lower-cased MX host name without trailing dot (or the
	// transport relay host).
	MXHost string
	// Stream is the message's stream ("transactional", "marketing", ...).
	Stream string
}

// TLSMode is how a connection uses STARTTLS.
type TLSMode int

// TLS modes.
const (
	// TLSOpportunistic uses STARTTLS when offered, without verifying.
	TLSOpportunistic TLSMode = iota
	// TLSRequired defers the message when STARTTLS is not available.
	TLSRequired
	// TLSDisabled never uses STARTTLS.
	TLSDisabled
)

// Egress is the source a connection leaves from.
type Egress struct {
	// Name identifies the source in logs and shaping state.
	Name string
	// LocalIP is the bind address; "" lets the kernel choose.
	LocalIP string
	// EHLO is the name sent in EHLO; "" means the daemon's hostname.
	EHLO string
}

// ConnPermit is policy's permission to open one connection.
type ConnPermit struct {
	Egress Egress
	// MaxMessages per connection; 0 means unlimited.
	MaxMessages int
	// IdleTimeout closes the pooled connection when unused this long;
	// 0 means delivery's default.
	IdleTimeout time.Duration
	TLS         TLSMode
	// Scope names the connection limit the permit counts against
	// (connections with equal Scope share one limit); "" means unknown.
	// See ConnTrier.
	Scope string
	// Release must be called exactly once when the connection closes.
	Release func()
}

// ConnTrier is optionally implemented by a Shaper. TryAcquireConn is
// AcquireConn without the wait for a connection slot: when every slot of
// the limit d counts against is taken, it returns ok false and that
// limit's scope (ConnPermit.Scope) at once. Delivery then closes an idle
// pooled connection counted under scope, whose slot is wasted, and asks
// again; with none to close it calls AcquireConn and waits. It embeds
// Shaper (as go-smtp's AuthSession embeds Session), so a value found by
// type assertion is a whole shaper.
type ConnTrier interface {
	Shaper
	TryAcquireConn(ctx context.Context, d Dest) (p ConnPermit, scope string, ok bool, err error)
}

// TLSPolicy is optionally implemented by a Shaper: the TLS mode its rules
// ask for d, so that a pooled connection opened for another domain on the
// same MX is reused for d only if it satisfies d's rule. It embeds Shaper.
type TLSPolicy interface {
	Shaper
	TLSMode(d Dest) TLSMode
}

// Shaper decides when delivery may connect and send.
type Shaper interface {
	// AcquireConn blocks until a new connection to d may be opened. A
	// *PolicyError refuses (suspension, bounce-all); ctx errors end the wait.
	AcquireConn(ctx context.Context, d Dest) (ConnPermit, error)
	// AcquireMessage blocks until one more message may be sent to d from
	// egress. A *PolicyError refuses (warm-up cap, suspension).
	AcquireMessage(ctx context.Context, d Dest, egress string) error
	// Observe reports every remote reply (and local error as code 0) so
	// policy can run its automation rules.
	Observe(d Dest, egress string, code int, enhanced, text string)
}

// Suppressor is asked before each recipient is sent to.
type Suppressor interface {
	// Suppressed reports whether addr is suppressed in stream, and why.
	Suppressed(stream, addr string) (reason string, ok bool)
}

// PolicyError is policy refusing to send now.
type PolicyError struct {
	// Bounce: fail the recipients now instead of deferring them.
	Bounce bool
	// Reason is shown as the recipients' last reply.
	Reason string
	// Until is when the refusal ends (zero if unknown).
	Until time.Time
}

func (e *PolicyError) Error() string {
	if e.Until.IsZero() {
		return fmt.Sprintf("policy: %s", e.Reason)
	}
	return fmt.Sprintf("policy: %s (until %s)", e.Reason, e.Until.UTC().Format(time.RFC3339))
}
