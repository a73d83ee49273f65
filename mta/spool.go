package mta

// This file is the contract between ingest and the spool: what ingest
// hands over (Envelope, NewMessage) and the one error it must recognise
// (ErrInsufficientStorage). ingest defines the Spool interface it needs;
// *queue.Queue implements it, and queue's Envelope and NewMessage are
// these types, so ingest never imports queue (ARCHITECTURE.md).

import "errors"

// ErrInsufficientStorage is returned by a spool, instead of writing, when
// its file system is below the configured free-space reserve: SMTP
// answers 452 4.3.1, HTTP 507.
var ErrInsufficientStorage = errors.New("queue: insufficient system storage")

// Envelope is what ingest hands the spool with a body.
type Envelope struct {
	// From is the envelope sender (MAIL FROM); "" is the null sender <>.
	From string
	// Recipients are RCPT TO addresses, in order. Duplicates are allowed
	// only once (the queue drops exact repeats).
	Recipients []string
	// Stream is the sending stream ("transactional", "marketing", ...).
	Stream   string
	Tenant   string
	Campaign string
	// Source says how the message arrived: "smtp", "http", "dsn", ...
	Source string
}

// NewMessage is a message for EnqueueBatch, or one the queue enqueues on
// its own behalf (a DSN from OnFailure).
type NewMessage struct {
	Envelope Envelope
	Body     []byte
	// Parts, when Body is nil, are the body in pieces: they are copied
	// straight into the commit batch, so a caller that holds a message
	// in pieces (ingest: new fields + the client's bytes) needs no
	// intermediate copy.
	Parts [][]byte
}

// Len is the body's length in bytes.
func (m NewMessage) Len() int {
	if m.Body != nil {
		return len(m.Body)
	}
	n := 0
	for _, p := range m.Parts {
		n += len(p)
	}
	return n
}
