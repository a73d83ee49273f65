package bounce

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
)

// Kind says what an inbound report is.
type Kind string

// Report kinds.
const (
	KindDSN       Kind = "dsn"       // a delivery status notification (standard or not)
	KindARF       Kind = "arf"       // an RFC 5965 feedback (complaint) report
	KindAutoReply Kind = "autoreply" // an RFC 3834 auto-reply: not a bounce
	KindUnknown   Kind = "unknown"   // nothing recognisable
)

// Bounce is the result for one recipient of a report.
type Bounce struct {
	// Recipient is the address that failed (or complained, or auto-replied).
	Recipient string `json:"recipient"`
	// Reason is the classifier's reason (sisimai vocabulary).
	Reason string `json:"reason"`
	// Status is the DSN status code ("5.1.1", or "5.0.9xx" when the report
	// gave none).
	Status string `json:"status"`
	// ReplyCode is the SMTP reply code when one was reported (0 otherwise).
	ReplyCode int `json:"reply_code"`
	// Hard is true when the address should be suppressed.
	Hard bool `json:"hard"`
	// Diagnostic is the remote server's text (Diagnostic-Code or the
	// paragraph about the recipient).
	Diagnostic string `json:"diagnostic"`
	// RemoteMTA is the host that refused, when reported.
	RemoteMTA string `json:"remote_mta,omitempty"`
	// Action is the DSN action (failed, delayed, delivered, ...), if any.
	Action string `json:"action,omitempty"`
}

// Report is a parsed asynchronous bounce, feedback report or auto-reply.
type Report struct {
	Kind    Kind
	Bounces []Bounce
	// FeedbackType is the ARF Feedback-Type (abuse, fraud, opt-out, ...).
	FeedbackType string
	// ReportingMTA is the DSN Reporting-MTA, if any.
	ReportingMTA string
	// Subject of the report itself.
	Subject string
	// OriginalHeaders are the headers of the message the report is about,
	// when the report includes them.
	OriginalHeaders mail.Header
	// OriginalMessageID is the original's Message-ID without angle brackets.
	OriginalMessageID string
	// OriginalReturnPath is the original's envelope sender (Return-Path, or
	// ARF Original-Mail-From), without angle brackets.
	OriginalReturnPath string
	// PetrelID is the original's X-Petrel-ID header, if present.
	PetrelID string
}

// Limits that keep hostile input cheap.
const (
	maxParseSize = 16 << 20
	maxParts     = 64
	maxDepth     = 8
	// maxErrText bounds the human-readable text searched for recipients,
	// report fields and the start of a returned message: the part of a
	// bounce that explains it is short, and what follows is the
	// returned message.
	maxErrText = 256 << 10
	// maxDiagText bounds the text one recipient is classified on.
	maxDiagText = 4 << 10
	// maxBounces bounds the recipients read from one report.
	maxBounces = 256
)

// ErrNotMessage is returned when the input is not an RFC 5322 message.
var ErrNotMessage = errors.New("bounce: input is not a mail message")

// Parse parses raw as a bounce, feedback report or auto-reply using the
// default rules.
func Parse(raw []byte) (*Report, error) { return DefaultRules().Parse(raw) }

// leaf is one non-multipart MIME part.
type leaf struct {
	ctype string // lower-cased media type
	body  []byte // transfer-decoded
}

// Parse parses raw with r. It never panics on bad input; a message that
// cannot be read at all gives ErrNotMessage.
func (r *Rules) Parse(raw []byte) (*Report, error) {
	if len(raw) > maxParseSize {
		raw = raw[:maxParseSize]
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	msg, err := readMessage(raw)
	if err != nil {
		return nil, err
	}
	rep := &Report{Kind: KindUnknown, Subject: decodeHeader(msg.Header.Get("Subject"))}
	var leaves []leaf
	walk(textproto.MIMEHeader(msg.Header), msg.Body, 0, &leaves)

	var dsnPart, arfPart, textPart []byte
	var origPart []byte
	for _, l := range leaves {
		switch l.ctype {
		case "message/delivery-status", "message/global-delivery-status":
			if dsnPart == nil {
				dsnPart = l.body[:min(len(l.body), maxErrText)]
			}
		case "message/feedback-report":
			if arfPart == nil {
				arfPart = l.body
			}
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
			if origPart == nil {
				origPart = l.body
			}
		case "text/plain", "text/html", "":
			if textPart == nil {
				textPart = l.body
				if l.ctype == "text/html" {
					textPart = stripHTML(l.body[:min(len(l.body), maxErrText)])
				}
			}
		}
	}
	if textPart == nil {
		// A multipart part whose boundary could not be found: its raw
		// body is the best text there is.
		for _, l := range leaves {
			if strings.HasPrefix(l.ctype, "multipart/") {
				textPart = l.body
				break
			}
		}
	}
	if textPart == nil {
		textPart = []byte{}
	}
	if len(textPart) > maxErrText {
		textPart = textPart[:maxErrText]
	}
	if dsnPart == nil && arfPart == nil {
		// A delivery-status part without its MIME header (a broken or
		// missing boundary): the fields start at a Reporting-MTA or
		// Final-Recipient line.
		if loc := lineIndex(textPart, false, &dsnStartFirst, reDSNStart); loc != nil {
			dsnPart = textPart[loc[0]:]
			if o := findOriginal(dsnPart); o != nil {
				dsnPart = dsnPart[:o[0]]
			}
			textPart = textPart[:loc[0]]
		}
	}
	// A non-MIME bounce carries the original after a marker line.
	errText := textPart
	if origPart == nil {
		errText, origPart = splitOriginal(textPart)
	}
	rep.setOriginal(origPart)

	switch {
	case arfPart != nil:
		r.parseARF(rep, arfPart)
	case dsnPart != nil:
		r.parseDSN(rep, msg.Header, dsnPart, errText)
	case strings.EqualFold(strings.TrimSpace(msg.Header.Get("X-Apple-Unsubscribe")), "true"):
		// Apple Mail's one-click unsubscribe: a mail to the List-Unsubscribe
		// mailto address, marked auto-replied. It is an opt-out, not a
		// vacation notice.
		rep.Kind = KindARF
		rep.FeedbackType = "opt-out"
		rep.Bounces = []Bounce{{Recipient: addrOf(msg.Header.Get("From")), Reason: "feedback", Diagnostic: "opt-out"}}
	case isAutoReply(msg.Header, rep.Subject):
		rep.Kind = KindAutoReply
		from := addrOf(msg.Header.Get("From"))
		rep.Bounces = []Bounce{{Recipient: from, Reason: "vacation", Diagnostic: firstLines(string(textPart), 5)}}
	case r.parseSES(rep, textPart):
	default:
		r.parseText(rep, msg.Header, errText, false)
	}
	return rep, nil
}

// readMessage reads headers leniently: a message whose header block
// net/mail rejects is retried with the bad lines dropped.
func readMessage(raw []byte) (*mail.Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err == nil {
		return msg, nil
	}
	head, body, found := bytes.Cut(raw, []byte("\n\n"))
	if !found {
		return nil, fmt.Errorf("%w: %w", ErrNotMessage, err)
	}
	var clean bytes.Buffer
	for _, line := range bytes.Split(head, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if clean.Len() > 0 {
				clean.Write(line)
				clean.WriteByte('\n')
			}
			continue
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && !bytes.ContainsAny(line[:i], " \t") {
			clean.Write(line)
			clean.WriteByte('\n')
		}
	}
	clean.WriteByte('\n')
	clean.Write(body)
	msg, err2 := mail.ReadMessage(&clean)
	if err2 != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMessage, err)
	}
	return msg, nil
}

// walk collects the leaves of a MIME tree, transfer-decoded.
func walk(h textproto.MIMEHeader, body io.Reader, depth int, out *[]leaf) {
	if len(*out) >= maxParts {
		return
	}
	ct := h.Get("Content-Type")
	media, params, err := mime.ParseMediaType(ct)
	if err != nil {
		// A malformed value ("text/plain charset=x" with no ';'): keep
		// the media type only.
		media = ""
		if f := strings.FieldsFunc(ct, func(r rune) bool { return r == ';' || r == ' ' || r == '\t' }); len(f) > 0 {
			media = strings.ToLower(f[0])
		}
	}
	data, _ := io.ReadAll(io.LimitReader(body, maxParseSize))
	if strings.HasPrefix(media, "multipart/") && depth < maxDepth {
		boundary := params["boundary"]
		if boundary == "" {
			boundary = guessBoundary(ct)
		}
		if boundary != "" && walkParts(data, boundary, depth, out) {
			return
		}
		// The declared boundary is absent (mangled or folded away): use
		// the first boundary-looking line of the body instead. Only at
		// the top level: nested guesses would re-read the same bytes at
		// every depth.
		if m := reBodyBoundary.FindSubmatch(data[:min(len(data), maxErrText)]); depth == 0 && m != nil && string(m[1]) != boundary {
			if walkParts(data, string(m[1]), depth, out) {
				return
			}
		}
	}
	data = transferDecode(h.Get("Content-Transfer-Encoding"), data)
	*out = append(*out, leaf{ctype: media, body: data})
	// A forwarded bounce: look into an attached message that is itself a report.
	if media == "message/rfc822" && depth < maxDepth && bytes.Contains(data, []byte("delivery-status")) {
		if inner, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
			if strings.Contains(strings.ToLower(inner.Header.Get("Content-Type")), "multipart/report") {
				walk(textproto.MIMEHeader(inner.Header), inner.Body, depth+1, out)
			}
		}
	}
}

// walkParts walks the parts of a multipart body; it reports whether it
// found any.
func walkParts(data []byte, boundary string, depth int, out *[]leaf) bool {
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	n := 0
	for len(*out) < maxParts {
		p, err := mr.NextRawPart()
		if err != nil {
			break
		}
		n++
		walk(p.Header, p, depth+1, out)
	}
	return n > 0
}

var reBodyBoundary = regexp.MustCompile(`(?m)^--([0-9A-Za-z'()+_,./:=?-]{6,70})[ \t]*$`)

var reBoundary = regexp.MustCompile(`(?i)boundary\s*=\s*"?([^";]+)"?`)

func guessBoundary(ct string) string {
	if m := reBoundary.FindStringSubmatch(ct); m != nil {
		return strings.TrimSpace(m[1])
	}
	return ""
}

func transferDecode(cte string, data []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, data)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil && n == 0 {
			return data
		}
		return out[:n]
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(data)))
		if err != nil && len(out) == 0 {
			return data
		}
		return out
	}
	return data
}

// stripHTML turns an HTML body into text: tags become spaces and the
// common entities are decoded.
func stripHTML(b []byte) []byte {
	s := stripTags(string(b))
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&nbsp;", " ", "&quot;", `"`).Replace(s)
	return []byte(s)
}

// stripTags replaces each tag (`(?s)<[^>]*>`) with a space in one pass:
// each '<' with a '>' after it starts a tag that ends at that '>'; once a
// '<' has none, no later one has either.
func stripTags(s string) string {
	var b strings.Builder
	for {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			break
		}
		gt := strings.IndexByte(s[lt+1:], '>')
		if gt < 0 {
			break
		}
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[:lt])
		b.WriteByte(' ')
		s = s[lt+1+gt+1:]
	}
	if b.Len() == 0 {
		return s
	}
	b.WriteString(s)
	return b.String()
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	return input, nil // undecodable charsets pass through as bytes
}}

func decodeHeader(s string) string {
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

var reDSNStart = regexp.MustCompile(`(?mi)^(?:reporting-mta|final-recipient):[ \t]*(?:dns|rfc822|x-local-host|smtp)?;`)

// originalMarkers start the copy of the original message in non-MIME bounces.
var reOriginal = regexp.MustCompile(`(?im)^[ \t]*(?:` + strings.Join([]string{
	`-+ ?this is a copy of the message`,
	`-+ ?below this line is a copy of the message`,
	`-+ ?original message`,
	`-+ ?the original message`,
	`-+ ?returned message`,
	`-+ ?unsent message below`,
	`-+ ?message headers follow`,
	`message headers follow`,
	`-+ ?the header of the original message`,
	`-+ ?original message header`,
	`-+ ?original headers`,
	`-+ ?undelivered message`,
	`-+ ?message text follows`,
	`-+ ?sent message follows`,
	`original message headers:?$`,
	`--- the header of the original message is following`,
	`content-type: message/rfc822`,
	`-+ ?end of non-delivery report`,
	`\|-+ ?original message`,
	`-+ ?forwarded message`,
	`included is a copy of the message header`, // MXLogic (Exim)
	`original mail as follows`,                 // fml
	`below is a copy of the original message`,  // OpenSMTPD
	`-+ ?this is a copy of your message`,       // Exim
}, "|") + `).*$`)

// splitOriginal cuts text at the first marker of an included original;
// it returns the error part and the original (nil if none).
func splitOriginal(text []byte) (errPart, orig []byte) {
	loc := findOriginal(text)
	if loc == nil {
		if i := findHeaderBlock(text); i > 0 {
			return text[:i], text[i:]
		}
		return text, nil
	}
	rest := bytes.TrimLeft(text[loc[1]:], "\n -")
	return text[:loc[0]], rest
}

// findOriginal is reOriginal.FindIndex(text), run only on the lines that
// can start a marker (their first non-blank byte starts one of the
// markers), so its cost is one pass over text.
func findOriginal(text []byte) []int {
	return lineIndex(text, true, &originalFirst, reOriginal)
}

// lineIndex is re.FindIndex(text) for a line-anchored pattern ((?m)^ ...,
// never spanning a newline) that can only match on a line whose first
// byte (after blanks, spaces and tabs, when blanks is set) is marked in
// first: re runs only on those lines, so the cost is one pass over text
// instead of the regexp engine's pass over all of it.
func lineIndex(text []byte, blanks bool, first *[256]bool, re *regexp.Regexp) []int {
	for start := 0; start < len(text); {
		i := start
		for blanks && i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}
		if i == len(text) {
			break
		}
		end := len(text)
		if first[text[i]] {
			if j := bytes.IndexByte(text[i:], '\n'); j >= 0 {
				end = i + j
			}
			if loc := re.FindIndex(text[start:end]); loc != nil {
				return []int{start + loc[0], start + loc[1]}
			}
		} else if j := bytes.IndexByte(text[i:], '\n'); j >= 0 {
			end = i + j
		}
		start = end + 1
	}
	return nil
}

// byteSet returns the set of the bytes of s, in either case for letters.
func byteSet(s string) (t [256]bool) {
	for _, c := range []byte(s) {
		t[c] = true
		if 'a' <= c && c <= 'z' {
			t[c-32] = true
		}
	}
	return t
}

// dsnStartFirst holds the first bytes of reDSNStart's field names.
var dsnStartFirst = byteSet("rf")

// reHeaderLine matches a line that is a header field of a returned message.
var reHeaderLine = regexp.MustCompile(`^(?i:return-path|received|from|to|cc|subject|date|message-id|mime-version|content-type|reply-to|sender|dkim-signature|x-[a-z0-9-]+):`)

// findHeaderBlock finds a returned message quoted without a marker line:
// the offset of a paragraph that starts with two header field lines, when
// the text before it names an address (the explanation of the failure).
// It returns -1 when there is none.
func findHeaderBlock(text []byte) int {
	blank := false
	for start := 0; start < len(text); {
		end := bytes.IndexByte(text[start:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += start
		}
		line := bytes.TrimRight(text[start:end], "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			blank = true
			start = end + 1
			continue
		}
		if blank && start > 0 && headerLead(line) && reHeaderLine.Match(line) && end+1 < len(text) {
			next := text[end+1:]
			if j := bytes.IndexByte(next, '\n'); j >= 0 {
				next = next[:j]
			}
			if reHeaderLine.Match(next) && bytes.IndexByte(text[:start], '@') >= 0 {
				return start
			}
		}
		blank = false
		start = end + 1
	}
	return -1
}

// headerLead reports whether line can match reHeaderLine: its first byte
// starts one of the field names and it has a colon (a cheap test run
// before the regexp on every paragraph's first line).
func headerLead(line []byte) bool {
	return len(line) > 0 && bytes.IndexByte([]byte("rftcsdmx"), line[0]|0x20) >= 0 && bytes.IndexByte(line, ':') > 0
}

// originalFirst holds the first bytes of the reOriginal markers.
var originalFirst = byteSet("-|mocib")

// setOriginal extracts the original's headers.
func (rep *Report) setOriginal(orig []byte) {
	if len(orig) == 0 {
		return
	}
	orig = bytes.TrimLeft(orig, "\n \t")
	orig = orig[:min(len(orig), maxErrText)] // the headers are at its top
	// Skip lines that do not look like headers (e.g. SMTP transcripts).
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, orig...), '\n', '\n'))))
	h, err := tp.ReadMIMEHeader()
	if len(h) == 0 && err != nil {
		// Try from the first line that looks like "Name: value".
		if i := reHeaderStart.FindIndex(orig[:min(len(orig), maxErrText)]); i != nil {
			tp = textproto.NewReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, orig[i[0]:]...), '\n', '\n'))))
			h, _ = tp.ReadMIMEHeader()
		}
	}
	if len(h) == 0 {
		return
	}
	rep.OriginalHeaders = mail.Header(h)
	rep.OriginalMessageID = strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
	if rp := h.Get("Return-Path"); rp != "" && rep.OriginalReturnPath == "" {
		rep.OriginalReturnPath = strings.Trim(strings.TrimSpace(rp), "<>")
	}
	rep.PetrelID = strings.TrimSpace(h.Get("X-Petrel-Id"))
}

var reHeaderStart = regexp.MustCompile(`(?m)^(?:Return-Path|Received|From|To|Message-I[Dd]|Subject|Date|X-[A-Za-z-]+):`)

// isAutoReply recognises RFC 3834 auto-replies and common vacation notices.
func isAutoReply(h mail.Header, subject string) bool {
	from := strings.ToLower(h.Get("From"))
	if strings.Contains(from, "mailer-daemon") || strings.Contains(from, "postmaster") {
		return false
	}
	as := strings.ToLower(h.Get("Auto-Submitted"))
	if strings.HasPrefix(as, "auto-replied") {
		return true
	}
	if h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != "" || h.Get("X-Autoresponder") != "" {
		return true
	}
	if p := strings.ToLower(h.Get("Precedence")); p == "auto_reply" {
		return true
	}
	s := strings.ToLower(subject)
	for _, p := range []string{"auto:", "automatic reply", "autoreply", "auto-reply", "auto reply", "out of office",
		"out of the office", "away from", "vacation", "on leave", "abwesenheit", "réponse automatique",
		"respuesta automática", "automatische antwort", "away until"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func addrOf(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return strings.ToLower(a.Address)
	}
	if m := reAddr.FindString(s); m != "" {
		return strings.ToLower(m)
	}
	return strings.ToLower(strings.Trim(strings.TrimSpace(s), "<>"))
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
