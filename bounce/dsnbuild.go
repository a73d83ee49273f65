package bounce

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/queue"
)

// DSNParams is what BuildDSN needs: the reporting host, the failed
// message's envelope and bytes, and the failures (as queue reports them).
type DSNParams struct {
	// Hostname is the reporting MTA (Reporting-MTA dns;Hostname, From
	// MAILER-DAEMON@Hostname).
	Hostname string
	// MsgID is the queue's ID of the failed message.
	MsgID string
	// Envelope of the failed message; Envelope.From receives the DSN.
	Envelope queue.Envelope
	// Original is the failed message (its header block is attached).
	Original []byte
	// Failed lists the recipients that failed for good.
	Failed []queue.Failure
	// Arrival is when the failed message was received (zero: omitted).
	Arrival time.Time
	// Now is the report's date.
	Now time.Time
}

// ErrNullSender is returned when asked to build a DSN for a message with
// the null sender: DSNs are never sent to <> (RFC 3464 / RFC 5321 6.1).
var ErrNullSender = errors.New("bounce: no DSN for the null sender")

// ClassifyReason adapts Classify to delivery's hook signature.
func ClassifyReason(code int, enhanced, text string) (reason string, hard bool) {
	c := Classify(code, enhanced, text)
	return c.Reason, c.Hard
}

// BuildDSN returns an RFC 3464 multipart/report (report-type=
// delivery-status) to p.Envelope.From: a human-readable part, a
// message/delivery-status part with one block per failed recipient, and
// the original's headers as text/rfc822-headers. Lines end in CRLF.
func BuildDSN(p DSNParams) ([]byte, error) {
	if p.Envelope.From == "" {
		return nil, ErrNullSender
	}
	if len(p.Failed) == 0 {
		return nil, errors.New("bounce: BuildDSN with no failed recipients")
	}
	host := sanitizeHeader(p.Hostname)
	if host == "" {
		host = "localhost"
	}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("bounce: dsn id: %w", err)
	}
	id := hex.EncodeToString(rnd[:])

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.SetBoundary("petrel-dsn-" + id); err != nil {
		return nil, fmt.Errorf("bounce: dsn boundary: %w", err)
	}

	// 1. Human-readable explanation.
	var human strings.Builder
	fmt.Fprintf(&human, "This is the mail system at host %s.\r\n\r\n", host)
	human.WriteString("Your message could not be delivered to one or more recipients.\r\n")
	human.WriteString("It has been returned for good: no further attempts will be made.\r\n\r\n")
	for _, f := range p.Failed {
		fmt.Fprintf(&human, "<%s>: %s\r\n", sanitizeHeader(f.Rcpt), describeFailure(f))
	}
	if err := writePart(mw, "text/plain; charset=utf-8", human.String()); err != nil {
		return nil, err
	}

	// 2. Machine-readable delivery status.
	var ds strings.Builder
	fmt.Fprintf(&ds, "Reporting-MTA: dns;%s\r\n", host)
	if p.MsgID != "" {
		fmt.Fprintf(&ds, "X-Petrel-Queue-ID: %s\r\n", sanitizeHeader(p.MsgID))
	}
	if !p.Arrival.IsZero() {
		fmt.Fprintf(&ds, "Arrival-Date: %s\r\n", p.Arrival.Format(time.RFC1123Z))
	}
	for _, f := range p.Failed {
		ds.WriteString("\r\n")
		fmt.Fprintf(&ds, "Final-Recipient: rfc822;%s\r\n", sanitizeHeader(f.Rcpt))
		ds.WriteString("Action: failed\r\n")
		fmt.Fprintf(&ds, "Status: %s\r\n", failureStatus(f))
		if f.RemoteMX != "" {
			fmt.Fprintf(&ds, "Remote-MTA: dns;%s\r\n", sanitizeHeader(f.RemoteMX))
		}
		if f.Code != 0 || f.Reply != "" {
			fmt.Fprintf(&ds, "Diagnostic-Code: smtp;%s\r\n", foldValue(diagnostic(f)))
		}
		fmt.Fprintf(&ds, "Last-Attempt-Date: %s\r\n", p.Now.Format(time.RFC1123Z))
	}
	if err := writePart(mw, "message/delivery-status", ds.String()); err != nil {
		return nil, err
	}

	// 3. The original's headers.
	hdr := originalHeaderBlock(p.Original)
	if err := writePart(mw, "text/rfc822-headers", hdr); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("bounce: dsn close: %w", err)
	}

	var out bytes.Buffer
	fmt.Fprintf(&out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(&out, "To: <%s>\r\n", sanitizeHeader(p.Envelope.From))
	out.WriteString("Subject: Undelivered Mail Returned to Sender\r\n")
	fmt.Fprintf(&out, "Date: %s\r\n", p.Now.Format(time.RFC1123Z))
	fmt.Fprintf(&out, "Message-ID: <dsn.%s.%s@%s>\r\n", id, sanitizeID(p.MsgID), host)
	out.WriteString("Auto-Submitted: auto-replied\r\n")
	out.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&out, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", mw.Boundary())
	out.WriteString("\r\n")
	out.WriteString("This is a MIME-encapsulated delivery status notification.\r\n\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

func writePart(mw *multipart.Writer, ctype, content string) error {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", ctype)
	if ctype == "text/plain; charset=utf-8" {
		h.Set("Content-Transfer-Encoding", "8bit")
	} else {
		h.Set("Content-Transfer-Encoding", "7bit")
	}
	w, err := mw.CreatePart(h)
	if err != nil {
		return fmt.Errorf("bounce: dsn part: %w", err)
	}
	if _, err := w.Write([]byte(content)); err != nil {
		return fmt.Errorf("bounce: dsn part: %w", err)
	}
	return nil
}

// failureStatus is the enhanced code of f, or one derived from its reply.
func failureStatus(f queue.Failure) string {
	if validStatus(f.Enhanced) && f.Enhanced[0] == '5' {
		return f.Enhanced
	}
	if f.State == queue.StateExpired {
		return "4.4.7"
	}
	if s := findStatus(f.Reply); s != "" && s[0] == '5' {
		return s
	}
	if f.Reason != "" {
		if c := internalCode[f.Reason]; c != "" && f.Reason != "undefined" && f.Reason != "onhold" {
			// Map a few reasons to their RFC 3463 codes; else 5.0.0.
			switch f.Reason {
			case "userunknown":
				return "5.1.1"
			case "hostunknown":
				return "5.1.2"
			case "mailboxfull":
				return "5.2.2"
			case "mesgtoobig":
				return "5.3.4"
			}
		}
	}
	return "5.0.0"
}

func diagnostic(f queue.Failure) string {
	reply := sanitizeHeader(f.Reply)
	if f.Code != 0 && !strings.HasPrefix(reply, fmt.Sprint(f.Code)) {
		reply = strings.TrimSpace(fmt.Sprintf("%d %s %s", f.Code, f.Enhanced, reply))
	}
	return reply
}

func describeFailure(f queue.Failure) string {
	switch {
	case f.State == queue.StateExpired:
		return "delivery time expired; last reply: " + sanitizeHeader(firstNonEmpty(f.Reply, "none"))
	case f.RemoteMX != "":
		return fmt.Sprintf("host %s said: %s", sanitizeHeader(f.RemoteMX), diagnostic(f))
	}
	return diagnostic(f)
}

// sanitizeHeader removes CR, LF and other control bytes from a value.
func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
}

func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return -1
	}, s)
}

// foldValue folds a long header value at spaces so lines stay under 78
// characters where possible.
func foldValue(v string) string {
	words := strings.Fields(v)
	var b strings.Builder
	line := 0
	for i, w := range words {
		if i > 0 {
			if line+1+len(w) > 70 {
				b.WriteString("\r\n ")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// originalHeaderBlock returns the header block of raw with CRLF endings.
func originalHeaderBlock(raw []byte) string {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	head, _, _ := bytes.Cut(raw, []byte("\n\n"))
	if len(head) > 64<<10 {
		head = head[:64<<10]
		if i := bytes.LastIndexByte(head, '\n'); i > 0 {
			head = head[:i]
		}
	}
	lines := strings.Split(string(head), "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return b.String()
}

// DSNHook builds DSNs for the queue and hands them to ingest's entry
// point, so a DSN gets what all mail gets there (one header parse,
// Received, suppression of its recipient, DKIM) and is committed in the
// same synced batch as the bounce that caused it (the queue enqueues what
// OnFailure returns with the failure).
type DSNHook struct {
	hostname, bounceDomain string
	now                    func() time.Time
	log                    *slog.Logger
	ingest                 atomic.Pointer[ingest.Submitter]
}

// NewDSNHook returns a DSNHook for the reporting host hostname; senders
// on bounceDomain (VERP, ours) get no DSN. now nil means time.Now, log nil
// slog.Default(). Call Use before the queue delivers.
func NewDSNHook(hostname, bounceDomain string, now func() time.Time, log *slog.Logger) *DSNHook {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &DSNHook{hostname: hostname, bounceDomain: bounceDomain, now: now, log: log.With("component", "bounce.dsn")}
}

// Use sets the ingest entry point DSNs go through. The queue needs the
// hook when it opens and ingest needs the queue, hence the late binding.
func (h *DSNHook) Use(s *ingest.Submitter) { h.ingest.Store(s) }

// OnFailure is the queue.Options.OnFailure callback: a DSN for failures
// of messages with a non-null sender not on the bounce domain, prepared
// by ingest (Submitter.Prepare). A DSN whose recipient is suppressed is
// not sent. If ingest cannot prepare it (a signing failure) the DSN goes
// as built, unsigned, rather than being lost.
func (h *DSNHook) OnFailure(msgID string, env queue.Envelope, body []byte, failed []queue.Failure) *queue.NewMessage {
	if env.From == "" || len(failed) == 0 {
		return nil
	}
	if h.bounceDomain != "" && strings.HasSuffix(strings.ToLower(env.From), "@"+strings.ToLower(h.bounceDomain)) {
		return nil
	}
	b, err := BuildDSN(DSNParams{Hostname: h.hostname, MsgID: msgID, Envelope: env, Original: body, Failed: failed, Now: h.now()})
	if err != nil {
		h.log.Error("build DSN", "id", msgID, "err", err)
		return nil
	}
	plain := &queue.NewMessage{
		Envelope: queue.Envelope{From: "", Recipients: []string{env.From}, Stream: env.Stream, Tenant: env.Tenant, Source: "dsn"},
		Body:     b,
	}
	sub := h.ingest.Load()
	if sub == nil {
		h.log.Error("DSN hook used before ingest was bound (DSNHook.Use); DSN queued unprepared", "id", msgID)
		return plain
	}
	nm, _, err := sub.Prepare(context.Background(), ingest.Envelope{
		From: "", Rcpts: []string{env.From}, Stream: env.Stream, Tenant: env.Tenant, Source: "dsn",
		Verified: true, Generated: true,
	}, b)
	var temp *ingest.TemporaryError
	switch {
	case errors.As(err, &temp):
		h.log.Warn("DSN not prepared by ingest; queued unsigned", "id", msgID, "err", err)
		return plain
	case err != nil:
		h.log.Info("no DSN", "id", msgID, "to", env.From, "err", err)
		return nil
	}
	return &nm
}
