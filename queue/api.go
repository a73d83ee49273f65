package queue

// This file is the queue's public contract, shared by ingest, delivery,
// admin and cmd/petreld. Change signatures only together with their users.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/petrel-mta/petrel/mta"
)

// ErrNotFound is returned for an unknown message ID.
var ErrNotFound = errors.New("queue: message not found")

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("queue: closed")

// ErrBadCursor is returned for a malformed list cursor or event sequence
// (they come from clients' query strings).
var ErrBadCursor = errors.New("queue: malformed cursor")

// Envelope is what ingest hands the queue with a body (mta.Envelope).
type Envelope = mta.Envelope

// RcptState is the state of one recipient.
type RcptState string

// Recipient states. Queued/Deferred/Held are live; the rest are final.
const (
	StateQueued    RcptState = "queued"
	StateDeferred  RcptState = "deferred"
	StateHeld      RcptState = "held"
	StateDelivered RcptState = "delivered"
	StateBounced   RcptState = "bounced"
	StateExpired   RcptState = "expired"
	StateDeleted   RcptState = "deleted"
	// StateSuppressed: the recipient was suppressed before delivery.
	StateSuppressed RcptState = "suppressed"
)

// Final reports whether s is a final state.
func (s RcptState) Final() bool {
	switch s {
	case StateQueued, StateDeferred, StateHeld:
		return false
	}
	return true
}

// Outcome is what one delivery attempt did for one recipient.
type Outcome int

// Outcomes, as in DESIGN.md "Delivery outcomes".
const (
	// Delivered: 2xx.
	Delivered Outcome = iota + 1
	// Deferred: 4xx or temporary connection/TLS/DNS failure; retried on the
	// schedule until max_queue_lifetime, then expired.
	Deferred
	// Bounced: 5xx, null MX, NXDOMAIN: final failure now.
	Bounced
	// Suppressed: policy refused the recipient before sending.
	Suppressed
)

// Result is the outcome of one attempt for one recipient of a Batch.
type Result struct {
	// Index is Rcpt.Index from the Batch.
	Index   int
	Outcome Outcome
	// Code is the SMTP reply code (0 when no reply was received).
	Code int
	// Enhanced is the enhanced status code ("5.1.1"), if any.
	Enhanced string
	// Reply is the full reply text, or the local error ("connect: refused").
	Reply string
	// RemoteMX is the host that answered (or that we tried last).
	RemoteMX string
	// Reason is the bounce classifier's reason ("userunknown", ...).
	Reason string
	// SourceIP is the local (egress) address of the connection the
	// attempt used ("" when none was made).
	SourceIP string
}

// Rcpt is one recipient inside a Batch.
type Rcpt struct {
	// Index is the recipient's position in the message (stable key).
	Index    int
	Addr     string
	Attempts int
}

// Batch is a set of due recipients of one message that share a destination
// domain, handed to delivery as one SMTP transaction.
type Batch struct {
	MsgID    string
	Envelope Envelope
	// Domain is the lower-cased destination domain of every Rcpt.
	Domain  string
	Rcpts   []Rcpt
	Created time.Time
	// Size of the body in bytes.
	Size int64
	// Forced: an operator made some of these recipients due (flush,
	// release), so delivery tries hosts its dead-host cache marked down.
	Forced bool

	// meta is the message record read by Next (immutable once written),
	// reused by Complete.
	meta *metaRec
}

// RcptInfo is a recipient as shown by admin APIs.
type RcptInfo struct {
	MsgID       string    `json:"id"`
	Index       int       `json:"index"`
	Addr        string    `json:"recipient"`
	State       RcptState `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastReply   string    `json:"last_reply,omitempty"`
	LastCode    int       `json:"last_code,omitempty"`
	Enhanced    string    `json:"enhanced,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	RemoteMX    string    `json:"remote_mx,omitempty"`
	// SourceIP is the egress address of the recipient's last attempt.
	SourceIP string    `json:"source_ip,omitempty"`
	Updated  time.Time `json:"updated,omitzero"`
}

// MessageInfo is a message as shown by admin APIs.
type MessageInfo struct {
	ID         string     `json:"id"`
	From       string     `json:"from"`
	Stream     string     `json:"stream,omitempty"`
	Campaign   string     `json:"campaign,omitempty"`
	Source     string     `json:"source,omitempty"`
	Size       int64      `json:"size"`
	Created    time.Time  `json:"created"`
	Recipients []RcptInfo `json:"recipients"`
}

// Event is one state change, written in the same batch as the change
// (DESIGN invariant 7).
type Event struct {
	// Seq is the event's key order (time-based, unique); use it as cursor.
	Seq       string    `json:"seq"`
	Type      string    `json:"type"` // received, delivered, deferred, bounced, expired, suppressed, ...
	Time      time.Time `json:"time"`
	MsgID     string    `json:"message_id,omitempty"`
	Recipient string    `json:"recipient,omitempty"`
	Stream    string    `json:"stream,omitempty"`
	Campaign  string    `json:"campaign,omitempty"`
	RemoteMX  string    `json:"remote_mx,omitempty"`
	Code      int       `json:"code,omitempty"`
	Enhanced  string    `json:"enhanced,omitempty"`
	Reply     string    `json:"reply,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	// Sender is the envelope sender of the message; set on "received"
	// events only (so consumers need not read the message back).
	Sender string `json:"sender,omitempty"`
	// URL is the link of a "clicked" event.
	URL string `json:"url,omitempty"`
	// Machine marks an "opened" or "clicked" event made by software (a
	// privacy proxy's prefetch, a link scanner); Reason says which.
	Machine bool `json:"machine,omitempty"`
	// SourceIP is the egress address the message left from: on a
	// delivery attempt's event (delivered, bounced, deferred), and on a
	// report's (complained, an asynchronous bounce) the address of the
	// recipient's delivery the report is about.
	SourceIP string `json:"source_ip,omitempty"`
}

// EventFilter selects events for Events.
type EventFilter struct {
	// After is an exclusive Seq cursor; "" starts at the oldest event.
	After string
	Since time.Time
	Type  string
	// Types, when not empty, selects only events of one of these types.
	Types     []string
	Recipient string
	Campaign  string
	Limit     int
}

// Failure describes one recipient that reached a failed final state
// (bounced or expired); handed to Options.OnFailure.
type Failure struct {
	Rcpt     string
	State    RcptState
	Code     int
	Enhanced string
	Reply    string
	RemoteMX string
	Reason   string
}

// NewMessage is one message of an EnqueueBatch (mta.NewMessage).
type NewMessage = mta.NewMessage

// Options configure Open.
type Options struct {
	// RetrySchedule is the delay before attempt 2, 3, ...; the last repeats.
	RetrySchedule []time.Duration
	// MaxLifetime: a recipient still deferred this long after the message
	// was created expires.
	MaxLifetime time.Duration
	// ReadyLimit bounds the in-memory ready set (DESIGN invariant 4), in
	// recipients; 0 means DefaultReadyLimit.
	ReadyLimit int
	// MaxBatchRcpts caps the recipients of one Batch; 0 means
	// DefaultMaxBatchRcpts.
	MaxBatchRcpts int
	// ScanInterval is how often the scheduler looks for recipients that
	// became due (deferred retries); 0 means DefaultScanInterval. New and
	// released recipients do not wait for it.
	ScanInterval time.Duration
	// EventRetention: events older than this are deleted in the background.
	EventRetention time.Duration
	// OnFailure is called inside Complete when recipients of a message with
	// a non-null sender fail for good; the returned message (a DSN) is
	// enqueued in the same synced batch. nil means no DSNs.
	OnFailure func(msgID string, env Envelope, body []byte, failed []Failure) *NewMessage
	// OnEvent is called after an event batch is durably committed (fan out
	// to metrics, webhooks, logs). It must not block.
	OnEvent func(Event)
	Logger  *slog.Logger
	// MinFreeSpace is the free space (bytes) the spool's file system must
	// keep: below it Enqueue fails with ErrInsufficientStorage while
	// deliveries still commit (see space.go). MinFreePercent, if set,
	// gives it as a percentage of the file system's size instead. Both
	// zero disables the guard.
	MinFreeSpace   int64
	MinFreePercent float64
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Spool is the ingest-side view of the queue.
type Spool interface {
	// Enqueue stores the message durably (synced) and returns its ID.
	Enqueue(ctx context.Context, env Envelope, body []byte) (string, error)
	// EnqueueBatch stores several messages in ONE synced batch (all or
	// none) and returns their IDs in order.
	EnqueueBatch(ctx context.Context, msgs []NewMessage) ([]string, error)
}
