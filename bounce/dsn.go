package bounce

import (
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// field is one unfolded "Name: value" line of a report part.
type field struct{ name, value string }

// fields unfolds a delivery-status or feedback-report body into fields,
// keeping blank lines as separators (name == ""). Continuation lines are
// collected and joined once, so a long folded value costs linear time.
func fields(b []byte) []field {
	text := string(b)
	out := make([]field, 0, strings.Count(text, "\n")+1)
	var cont [][]string // continuation lines of out[i], made at the first one
	addCont := func(i int, line string) {
		if cont == nil {
			cont = make([][]string, len(out), cap(out))
		}
		cont[i] = append(cont[i], strings.TrimSpace(line))
	}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			out = append(out, field{})
			if cont != nil {
				cont = append(cont, nil)
			}
			continue
		}
		last := len(out) - 1
		if (line[0] == ' ' || line[0] == '\t') && last >= 0 && out[last].name != "" {
			addCont(last, line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(name, " \t") {
			if last >= 0 && out[last].name != "" {
				addCont(last, line)
			}
			continue
		}
		out = append(out, field{fieldName(strings.TrimSpace(name)), strings.TrimSpace(value)})
		if cont != nil {
			cont = append(cont, nil)
		}
	}
	for i, c := range cont {
		if len(c) > 0 {
			out[i].value += " " + strings.Join(c, " ")
		}
	}
	return out
}

// knownFields are the field names of delivery-status and feedback
// reports, lower case: fieldName returns them without allocating.
var knownFields = []string{"final-recipient", "original-recipient", "action", "status", "remote-mta",
	"diagnostic-code", "reporting-mta", "arrival-date", "last-attempt-date", "received-from-mta",
	"x-postfix-queue-id", "x-postfix-sender", "will-retry-until", "x-powermta-bouncecategory",
	"feedback-type", "user-agent", "version", "original-mail-from", "original-rcpt-to", "source-ip"}

// fieldName is strings.ToLower(name), without a new string for the
// common names.
func fieldName(name string) string {
	for _, k := range knownFields {
		if len(k) == len(name) && strings.EqualFold(k, name) {
			return k
		}
	}
	return strings.ToLower(name)
}

// dsnRecord is one per-recipient block of a message/delivery-status part.
type dsnRecord struct {
	final, original, action, status, remote, diag, diagType string
	category                                                string // X-PowerMTA-BounceCategory
	statusNote                                              string // "(host name lookup failure)" after Status
}

var reAddr = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+`)

// findAddrs is reAddr.FindAllString(text, n) (n > 0) that runs the regular
// expression only where an '@' is, from the start of the run of local-part
// bytes before it, so its cost is one pass over text.
func findAddrs(text string, n int) []string {
	var out []string
	for _, loc := range findAddrIndex(text, n) {
		out = append(out, text[loc[0]:loc[1]])
	}
	return out
}

// findAddrIndex is findAddrs giving [start, end) offsets.
func findAddrIndex(text string, n int) [][2]int {
	var out [][2]int
	prev := 0 // end of the last match
	for at := 0; len(out) < n; {
		k := strings.IndexByte(text[at:], '@')
		if k < 0 {
			break
		}
		k += at
		start := k
		for start > prev && isLocalByte(text[start-1]) {
			start--
		}
		at = k + 1
		// The domain: a run of name bytes with a dot in it.
		end, dot := k+1, false
		for end < len(text) && end < k+256 && isDomainByte(text[end]) {
			dot = dot || text[end] == '.'
			end++
		}
		if start == k || !dot {
			continue
		}
		// text[start:k] is a run of local-part bytes, so reAddr matches
		// from start exactly when the domain does.
		n := domainMatch(text[k+1 : end])
		if n < 0 {
			continue
		}
		out = append(out, [2]int{start, k + 1 + n})
		prev = k + 1 + n
		at = prev
	}
	return out
}

// domainMatch returns the length of the match of reAddr's domain part
// (labels of letters, digits and inner hyphens, at least two, joined by
// dots) at the start of d, or -1 when there is none. It follows the
// regexp's leftmost-first, greedy semantics: a label followed by a dot
// must be its whole run of name bytes; the last one may end before a
// trailing hyphen run.
func domainMatch(d string) int {
	run := func(i int) int { // end of the run of label bytes from i
		for i < len(d) && (isAlnum(d[i]) || d[i] == '-') {
			i++
		}
		return i
	}
	r := run(0)
	if r == 0 || !isAlnum(d[0]) || !isAlnum(d[r-1]) {
		return -1 // the first label must be followed by a dot
	}
	end := -1
	for pos := r; pos < len(d) && d[pos] == '.' && pos+1 < len(d) && isAlnum(d[pos+1]); {
		r := run(pos + 1)
		l := r
		for !isAlnum(d[l-1]) {
			l--
		}
		end = l
		if l < r {
			break // a trailing hyphen: no dot can follow this label
		}
		pos = r
	}
	return end
}

// isAlnum reports an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// reNotRecipientField matches the start of a line that is a header field
// naming no recipient (a returned message's Message-ID, References,
// From, Received, ...): addresses after it are never bounced recipients.
var reNotRecipientField = regexp.MustCompile(`^[ \t>]*(?:message-id|in-reply-to|references|resent-message-id|from|sender|reply-to|return-path|errors-to|received|dkim-signature|list-[a-z-]+|x-[a-z0-9-]+)[ \t]*:`)

// notRecipientFields are the starts of reNotRecipientField's names.
var notRecipientFields = []string{"message-id", "in-reply-to", "references", "resent-message-id", "from", "sender",
	"reply-to", "return-path", "errors-to", "received", "dkim-signature", "list-", "x-"}

// inNotRecipientField reports whether the address at offset i of lower
// stands in such a header field.
func inNotRecipientField(lower string, i int) bool {
	return inNotRecipientFieldFrom(lower, strings.LastIndexByte(lower[:i], '\n')+1, i)
}

// inNotRecipientFieldFrom is inNotRecipientField with the start ls of
// i's line already known.
func inNotRecipientFieldFrom(lower string, ls, i int) bool {
	// Only a line whose first byte after blanks and quote marks starts
	// one of the field names can match: skip the regexp for the others.
	t := strings.TrimLeft(lower[ls:i], " \t>")
	if strings.IndexByte(t, ':') < 0 || !slices.ContainsFunc(notRecipientFields, func(f string) bool { return strings.HasPrefix(t, f) }) {
		return false
	}
	return reNotRecipientField.MatchString(lower[ls:i])
}

// isDomainByte reports the bytes of reAddr's domain part.
func isDomainByte(c byte) bool { return byteClass[c]&domainByte != 0 }

// isLocalByte reports the bytes of reAddr's local part.
func isLocalByte(c byte) bool { return byteClass[c]&localByte != 0 }

// byteClass classifies the bytes of addresses for isDomainByte and
// isLocalByte: letters, digits, '-' and '.' are domain bytes; letters,
// digits and ".!#$%&'*+/=?^_{|}~-" local-part bytes.
var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if isAlnum(byte(c)) {
			t[c] = domainByte | localByte
		}
	}
	t['-'] |= domainByte
	t['.'] |= domainByte
	for _, c := range []byte(".!#$%&'*+/=?^_{|}~-") {
		t[c] |= localByte
	}
	return t
}()

const (
	domainByte = 1 << iota
	localByte
)

// typedValue strips an "rfc822;" / "dns;" / "smtp;" type prefix.
func typedValue(v string) (typ, val string) {
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, " <@") {
		return strings.TrimSpace(t), strings.TrimSpace(rest)
	}
	return "", strings.TrimSpace(v)
}

func cleanAddr(v string) string {
	_, v = typedValue(v)
	if m := findAddrs(v, 1); len(m) > 0 {
		return strings.ToLower(m[0])
	}
	return strings.ToLower(strings.Trim(v, "<> "))
}

// parseDSN reads an RFC 3464 delivery-status part.
func (r *Rules) parseDSN(rep *Report, h mail.Header, part, errText []byte) {
	rep.Kind = KindDSN
	var recs []*dsnRecord
	var cur *dsnRecord
	for _, f := range fields(part) {
		switch f.name {
		case "":
			cur = nil // a blank line ends a per-recipient block
		case "reporting-mta":
			_, rep.ReportingMTA = typedValue(f.value)
		case "final-recipient", "original-recipient":
			if cur == nil || (f.name == "final-recipient" && cur.final != "") || (f.name == "original-recipient" && cur.original != "") {
				cur = &dsnRecord{}
				recs = append(recs, cur)
			}
			if f.name == "final-recipient" {
				cur.final = cleanAddr(f.value)
			} else {
				cur.original = cleanAddr(f.value)
			}
		case "action", "status", "remote-mta", "diagnostic-code":
			if cur == nil {
				// Per-recipient fields before Final-Recipient.
				cur = &dsnRecord{}
				recs = append(recs, cur)
			}
		}
		switch f.name {
		case "action":
			if cur != nil {
				cur.action = strings.ToLower(strings.Fields(f.value + " x")[0])
			}
		case "status":
			if cur != nil {
				if m := reStatus.FindString(f.value); m != "" {
					cur.status = m
				}
				if i, j := strings.IndexByte(f.value, '('), strings.LastIndexByte(f.value, ')'); i >= 0 && j > i {
					cur.statusNote = strings.TrimSpace(f.value[i+1 : j])
				}
			}
		case "remote-mta":
			if cur != nil {
				_, cur.remote = typedValue(f.value)
			}
		case "diagnostic-code":
			if cur != nil {
				cur.diagType, cur.diag = typedValue(f.value)
			}
		case "x-powermta-bouncecategory":
			if cur != nil {
				cur.category = strings.ToLower(strings.TrimSpace(f.value))
			}
		}
	}
	recs = slices.DeleteFunc(recs, func(r *dsnRecord) bool { return r.final == "" && r.original == "" })
	if len(recs) > maxBounces {
		recs = recs[:maxBounces]
	}
	doc := newErrDoc(string(errText))
	addrs := make([]string, 0, len(recs))
	for _, rec := range recs {
		addrs = append(addrs, firstNonEmpty(rec.final, rec.original))
	}
	doc.useRecipients(addrs)
	memo := r.newFinishMemo(len(addrs))
	delay := -1 // isDelayNotice of the report, computed once when needed
	for i, rec := range recs {
		rcpt := addrs[i]
		if rcpt == "" || !strings.Contains(rcpt, "@") && rec.original != "" {
			rcpt = firstNonEmpty(rec.original, rcpt)
		}
		diag := rec.diag[:min(len(rec.diag), maxDiagText)]
		if strings.TrimSpace(diag) == "" {
			// Without a Diagnostic-Code, the comment after the
			// status code is the only text about the failure.
			diag = rec.statusNote[:min(len(rec.statusNote), maxDiagText)]
		}
		if strings.TrimSpace(diag) == "" || len(recs) == 1 && len(diag) < 12 {
			if p := paragraphFor(doc, rcpt, addrs); p != "" {
				diag = strings.TrimSpace(diag + " " + p)
				if len(recs) == 1 && rec.diag == "" {
					// The sentence that explains the reply often
					// stands in its own paragraph just before it.
					diag = strings.TrimSpace(leadParagraph(doc, rcpt) + " " + diag)
				}
			}
		}
		ctext := strings.ToLower(squash(diag))
		para := paragraphFor(doc, rcpt, addrs)
		if i := strings.Index(para, "-----"); i > 0 {
			para = para[:i] // a section marker ("--- Transcript of session follows ---")
		}
		para = squash(para)
		if lp := strings.ToLower(para); len(ctext) >= 12 && len(lp) > len(ctext) {
			// The human-readable paragraph often quotes the reply in
			// full, with what follows it ("... (in reply to RCPT TO
			// command)"): classify that longer form.
			if i := strings.Index(lp, ctext); i >= 0 {
				ctext = lp[i:]
			}
		}
		f := fact{
			status:   rec.status,
			text:     ctext,
			action:   rec.action,
			diagType: rec.diagType,
			hint:     r.category[rec.category],
		}
		f.code = findReply(diag)
		if rec.action == "" && delay < 0 {
			delay = 0
			if isDelayNotice(rep.Subject, doc.lower[:min(len(doc.lower), maxDiagText)]) {
				delay = 1
			}
		}
		f.delay = rec.action == "" && delay == 1
		f.command = commandFor(diag, doc, rcpt)
		if f.command == "" {
			// The human-readable part often says more than the
			// Diagnostic-Code ("... (in reply to RCPT TO command)").
			f.command = findCommand(para)
		}
		f.rhost = hostOf(rec.remote)
		f.lhost = hostOf(rep.ReportingMTA)
		f.domain = domainOf(rcpt)
		f.status = preferStatus(rec.status, findStatus(diag), f.code)
		if rec.status == "4.4.7" && f.status != rec.status && (r.status[f.status] == "" || r.weak[r.status[f.status]]) {
			// The delivery expired; the last reply only says more when
			// it names a definite cause (4.4.5 system full, ...).
			f.status = rec.status
		}
		c := memo.finish(r, f, rcpt)
		rep.Bounces = append(rep.Bounces, Bounce{
			Recipient:  rcpt,
			Reason:     c.Reason,
			Status:     c.Status,
			ReplyCode:  c.Code,
			Hard:       c.Hard,
			Diagnostic: squash(diag),
			RemoteMTA:  rec.remote,
			Action:     rec.action,
		})
	}
	if len(recs) == 0 {
		r.parseText(rep, h, errText, true)
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// squash replaces each run of white space (regexp's \s: tab, newline,
// form feed, carriage return, space) with one space and trims the ends,
// in one pass.
func squash(s string) string {
	isWS := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; isWS(c) && (c != ' ' || i+1 < len(s) && isWS(s[i+1])) {
			clean = false
			break
		}
	}
	if clean {
		return strings.TrimSpace(s)
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if !isWS(s[i]) {
			b = append(b, s[i])
			continue
		}
		b = append(b, ' ')
		for i+1 < len(s) && isWS(s[i+1]) {
			i++
		}
	}
	return strings.TrimSpace(string(b))
}

// errDoc is the human-readable text of a report with its ASCII-lower-cased
// copy (same byte offsets), made once per report.
type errDoc struct {
	text, lower string
	// Computed on first use: the transcript commands (">>> DATA") and the
	// command the whole text names.
	scanned  bool
	locs     [][]int
	wholeCmd string
	// For a report naming many recipients (useRecipients), built once so
	// that finding each recipient costs a map lookup instead of a pass
	// over the text: addrPos maps every plain recipient to its offsets
	// in lower (as indexAddr finds them), byLocal the recipients by
	// their "local@" prefix (paragraphFor), oddRcpts those that are not
	// plain local@domain.
	addrPos     map[string]int      // each plain recipient's first offset, -1 if none
	morePos     map[string][]int    // the later offsets of recipients seen more than once
	byLocal     map[string]string   // the (first) recipient of each "local@"
	moreByLocal map[string][]string // all recipients of a "local@" that has several
	oddRcpts    []string
	maxLocal    int
}

// manyRecipients is the number of recipients from which a report's
// errDoc indexes addresses (useRecipients).
const manyRecipients = 8

// useRecipients prepares d for a report about rcpts; with many of them it
// indexes the text's addresses and the recipients, in one pass each.
func (d *errDoc) useRecipients(rcpts []string) {
	if len(rcpts) < manyRecipients {
		return
	}
	d.byLocal = make(map[string]string, len(rcpts))
	d.addrPos = make(map[string]int, len(rcpts))
	for _, o := range rcpts {
		at := strings.IndexByte(o, '@')
		if !plainAddr(o) {
			if o != "" {
				d.oddRcpts = append(d.oddRcpts, o)
			}
			continue
		}
		if _, ok := d.addrPos[o]; ok {
			continue
		}
		d.addrPos[o] = -1 // a recipient, not yet found in the text
		if first, ok := d.byLocal[o[:at+1]]; !ok {
			d.byLocal[o[:at+1]] = o
		} else {
			if d.moreByLocal == nil {
				d.moreByLocal = map[string][]string{}
			}
			if len(d.moreByLocal[o[:at+1]]) == 0 {
				d.moreByLocal[o[:at+1]] = []string{first}
			}
			d.moreByLocal[o[:at+1]] = append(d.moreByLocal[o[:at+1]], o)
		}
		d.maxLocal = max(d.maxLocal, at)
	}
	// Only the plain recipients' offsets are kept: indexAddr looks others
	// up in the text.
	lower := d.lower
	for at := 0; ; at++ {
		k := strings.IndexByte(lower[at:], '@')
		if k < 0 {
			break
		}
		at += k
		s, e := at, at+1
		for s > 0 && isLocalByte(lower[s-1]) {
			s--
		}
		for e < len(lower) && isDomainByte(lower[e]) {
			e++
		}
		if s == at || e == at+1 {
			continue
		}
		d.addPos(lower[s:e], s)
		if lower[e-1] == '.' && e-1 > at+1 {
			d.addPos(lower[s:e-1], s)
		}
	}
}

// plainAddr reports whether a is local@domain with one '@', local-part
// bytes before it and domain bytes after it.
func plainAddr(a string) bool {
	at := strings.IndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if i < at && !isLocalByte(a[i]) || i > at && !isDomainByte(a[i]) {
			return false
		}
	}
	return true
}

// indexAddr is indexAddr(d.lower[from:], addr) + from (or -1), from the
// address index when d has one.
func (d *errDoc) indexAddr(addr string, from int) int {
	first, ok := d.addrPos[addr]
	if !ok { // no index, or not one of the plain recipients
		if i := indexAddr(d.lower[from:], addr); i >= 0 {
			return from + i
		}
		return -1
	}
	if first < 0 {
		return -1
	}
	if first >= from {
		return first
	}
	pos := d.morePos[addr]
	if k, _ := slices.BinarySearch(pos, from); k < len(pos) {
		return pos[k]
	}
	return -1
}

// addPos records offset s of address a (offsets come in increasing
// order) when a is a plain recipient: the first in addrPos, the others in
// morePos, so that an address seen once costs no slice.
func (d *errDoc) addPos(a string, s int) {
	first, ok := d.addrPos[a]
	switch {
	case !ok:
	case first < 0:
		d.addrPos[a] = s
	default:
		if d.morePos == nil {
			d.morePos = map[string][]int{}
		}
		d.morePos[a] = append(d.morePos[a], s)
	}
}

// startsWithOther reports whether line starts with one of the report's
// recipients other than rcpt.
func (d *errDoc) startsWithOther(line, rcpt string, others []string) bool {
	if d.byLocal == nil {
		for _, o := range others {
			if o != rcpt && o != "" && strings.HasPrefix(line, o) {
				return true
			}
		}
		return false
	}
	if at := strings.IndexByte(line[:min(len(line), d.maxLocal+1)], '@'); at >= 0 {
		if more := d.moreByLocal[line[:at+1]]; more != nil {
			for _, o := range more {
				if o != rcpt && strings.HasPrefix(line, o) {
					return true
				}
			}
		} else if o, ok := d.byLocal[line[:at+1]]; ok && o != rcpt && strings.HasPrefix(line, o) {
			return true
		}
	}
	for _, o := range d.oddRcpts {
		if o != rcpt && strings.HasPrefix(line, o) {
			return true
		}
	}
	return false
}

// scan fills d's lazily computed fields.
func (d *errDoc) scan() {
	if d.scanned {
		return
	}
	d.scanned = true
	if strings.Contains(d.text, ">>>") { // reTranscript needs it
		d.locs = reTranscript.FindAllStringSubmatchIndex(d.text, -1)
	}
	if len(d.locs) == 0 {
		d.wholeCmd = findCommandLower(d.text, d.lower)
	}
}

func newErrDoc(text string) *errDoc { return &errDoc{text: text, lower: asciiLower(text)} }

// indexAddr is the offset of the first occurrence of the address addr in
// lower that is not part of a longer address ("a@x.example" is not found
// in "ba@x.example" or "a@x.example.net"), or -1.
func indexAddr(lower, addr string) int {
	if addr == "" {
		return -1
	}
	for from := 0; ; {
		j := strings.Index(lower[from:], addr)
		if j < 0 {
			return -1
		}
		i := from + j
		e := i + len(addr)
		if (i == 0 || !isLocalByte(lower[i-1])) &&
			(e == len(lower) || !isDomainByte(lower[e]) || lower[e] == '.' && (e+1 == len(lower) || !isDomainByte(lower[e+1]))) {
			return i
		}
		from = i + 1
	}
}

// maxParagraph bounds the text taken as one recipient's paragraph.
const maxParagraph = 2000

// paragraphFor returns the text about rcpt: from the line naming it to the
// line that starts with another of others, bounded to maxParagraph bytes
// (so its cost does not grow with the report or the number of recipients).
func paragraphFor(d *errDoc, rcpt string, others []string) string {
	if rcpt == "" {
		return ""
	}
	lower := d.lower
	i := d.indexAddr(rcpt, 0)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(lower[:i], '\n') + 1
	if s, e, ok := sendmailResult(lower, start); ok {
		return d.text[s:e]
	}
	end := min(len(lower), start+maxParagraph)
	// The paragraph ends where a line starts with another recipient.
	ls := strings.IndexByte(lower[i:end], '\n')
	for ls >= 0 {
		ls += i + 1
		if ls >= end {
			break
		}
		line := strings.TrimLeft(lower[ls:end], " \t<*-0123456789")
		if d.startsWithOther(line, rcpt, others) {
			return d.text[start:ls]
		}
		i = ls
		ls = strings.IndexByte(lower[i:end], '\n')
	}
	return d.text[start:end]
}

// leadParagraph returns the paragraph just before the one that starts
// with the line naming rcpt, when it is short (one or two sentences).
func leadParagraph(d *errDoc, rcpt string) string {
	text, lower := d.text, d.lower
	i := d.indexAddr(rcpt, 0)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(lower[:i], '\n') + 1
	before := strings.TrimRight(text[:start], " \t\r\n")
	if len(before) == len(text[:start]) || !strings.Contains(text[len(before):start], "\n\n") {
		return "" // the line does not start a paragraph
	}
	p := before
	if j := strings.LastIndex(before, "\n\n"); j >= 0 {
		p = before[j+2:]
	}
	if p = strings.TrimSpace(p); len(p) > 200 {
		return ""
	}
	return p
}

// reSendmailResult matches a sendmail result line for one recipient
// ("554 <rcpt>... Remote protocol error").
var reSendmailResult = regexp.MustCompile(`^[ \t]*[245]\d\d[ -]<?[^\s<>]+@[^\s<>]+?>?\.\.\. `)

// sendmailResult reports whether the line of lower starting at start is a
// sendmail result line; if so, the recipient's text is that line plus the
// session lines just before it (">>> MAIL From:...", "<<< 501 ..."), which
// carry the reply it reports. The result lines of other recipients,
// before or after, are not part of it.
func sendmailResult(lower string, start int) (s, e int, ok bool) {
	e = len(lower)
	if j := strings.IndexByte(lower[start:], '\n'); j >= 0 {
		e = start + j
	}
	if !reSendmailResult.MatchString(lower[start:e]) {
		return 0, 0, false
	}
	s = start
	for s > 0 {
		ps := strings.LastIndexByte(lower[:s-1], '\n') + 1
		line := strings.TrimSpace(lower[ps : s-1])
		if !strings.HasPrefix(line, "<<<") && !strings.HasPrefix(line, ">>>") {
			break
		}
		s = ps
	}
	return s, e, true
}

// parseARF reads an RFC 5965 feedback report.
func (r *Rules) parseARF(rep *Report, part []byte) {
	rep.Kind = KindARF
	var rcpts []string
	for _, f := range fields(part) {
		switch f.name {
		case "feedback-type":
			rep.FeedbackType = strings.ToLower(f.value)
		case "original-rcpt-to", "removal-recipient":
			if a := cleanAddr(f.value); strings.Contains(a, "@") {
				rcpts = append(rcpts, a)
			}
		case "original-mail-from":
			rep.OriginalReturnPath = cleanAddr(f.value)
		}
	}
	if len(rcpts) == 0 && rep.OriginalHeaders != nil {
		if a := addrOf(rep.OriginalHeaders.Get("To")); strings.Contains(a, "@") {
			rcpts = append(rcpts, a)
		}
	}
	if len(rcpts) == 0 {
		rcpts = append(rcpts, "")
	}
	for _, a := range rcpts {
		rep.Bounces = append(rep.Bounces, Bounce{Recipient: a, Reason: "feedback", Diagnostic: rep.FeedbackType})
	}
}

// parseText handles bounces without a delivery-status part: it finds the
// failed addresses in the human-readable text and classifies the text
// around each.
//
// fromDSN is set for a delivery-status part without per-recipient fields:
// then only the text about each recipient counts, as the rest of the
// notification is the MTA's boilerplate.
func (r *Rules) parseText(rep *Report, h mail.Header, errText []byte, fromDSN bool) {
	doc := newErrDoc(string(errText))
	text := doc.text
	skip := map[string]bool{}
	for _, k := range []string{"From", "To", "Reply-To", "Sender", "Return-Path"} {
		for _, a := range reAddr.FindAllString(h.Get(k), -1) {
			skip[strings.ToLower(a)] = true
		}
	}
	if rep.OriginalHeaders != nil {
		for _, k := range []string{"From", "Return-Path", "Sender", "Reply-To"} {
			for _, a := range reAddr.FindAllString(rep.OriginalHeaders.Get(k), -1) {
				skip[strings.ToLower(a)] = true
			}
		}
	}
	var addrs []string
	seen := map[string]bool{}
	for _, a := range reAddr.FindAllString(h.Get("X-Failed-Recipients"), -1) {
		a = strings.ToLower(a)
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	// Lines that name a failed recipient outright ("<rcpt>:" in qmail
	// and Postfix, "RCPT TO: rcpt" in session summaries) are trusted
	// even when the address also appears in a header.
	for _, a := range rcptLines(text, 32) {
		delete(skip, strings.ToLower(a))
	}
	failedHeader := len(addrs) > 0
	// Recipients past maxBounces are not reported, but their lines still
	// end the paragraph of the one before (paragraphFor).
	var extra []string
	ls, scanned := 0, 0 // the start of the line of the address at loc[0], found up to scanned
	for _, loc := range findAddrIndex(text, 4*maxBounces) {
		if failedHeader {
			break
		}
		// Addresses come in order, so each byte is searched for a
		// newline once (a 64 KB line of addresses cost one pass each).
		if j := strings.LastIndexByte(doc.lower[scanned:loc[0]], '\n'); j >= 0 {
			ls = scanned + j + 1
		}
		scanned = loc[0]
		if inNotRecipientFieldFrom(doc.lower, ls, loc[0]) {
			continue
		}
		a := strings.ToLower(strings.TrimRight(text[loc[0]:loc[1]], "."))
		if skip[a] || seen[a] || strings.HasPrefix(a, "mailer-daemon@") {
			continue
		}
		seen[a] = true
		if len(addrs) < maxBounces {
			addrs = append(addrs, a)
		} else {
			extra = append(extra, a)
		}
	}
	if len(addrs) == 0 && rep.OriginalHeaders != nil {
		for _, a := range reAddr.FindAllString(rep.OriginalHeaders.Get("To"), -1) {
			a = strings.ToLower(a)
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	rep.Kind = KindDSN
	doc.useRecipients(append(slices.Clip(addrs), extra...))
	others := addrs
	if len(extra) > 0 {
		others = append(slices.Clip(addrs), extra...)
	}
	memo := r.newFinishMemo(len(addrs))
	hint := r.hint(h)
	delay := isDelayNotice(rep.Subject, doc.lower[:min(len(doc.lower), maxDiagText)])
	for _, a := range addrs {
		diag := text[:min(len(text), maxDiagText)]
		if len(addrs) > 1 {
			diag = paragraphFor(doc, a, others)
		} else if p := paragraphFor(doc, a, others); fromDSN && p != "" {
			diag = p
			if !hasWords(strings.ReplaceAll(asciiLower(p), a, "")) {
				diag = "" // the address alone, as in a list of failed recipients
			}
		}
		diag = squash(diag)
		f := fact{text: strings.ToLower(diag)}
		// A report without delivery-status fields is about a failure:
		// success replies in a quoted transcript ("Out: 250 2.1.5 Ok")
		// are not its status.
		f.status, f.code, f.command = memo.textFacts(f.text, a, func(text string) (string, int, string) {
			return textFailureStatus(text), textFailureReply(text), findCommand(text)
		})
		if f.command == "" {
			f.command = commandFor(diag, doc, a)
		}
		f.hint = hint
		f.delay = delay
		f.domain = domainOf(a)
		c := memo.finish(r, f, a)
		rep.Bounces = append(rep.Bounces, Bounce{
			Recipient:  a,
			Reason:     c.Reason,
			Status:     c.Status,
			ReplyCode:  c.Code,
			Hard:       c.Hard,
			Diagnostic: diag,
		})
	}
}

// hasWords reports whether s has a run of two or more letters.
func hasWords(s string) bool {
	run := 0
	for _, c := range s {
		if unicode.IsLetter(c) {
			if run++; run >= 2 {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// reRcptLine matches a line that names a failed recipient by itself.
var reRcptLine = regexp.MustCompile(`(?mi)^[ \t]*(?:<(` + reAddr.String() + `)>:?|rcpt to:[ \t]*<?(` + reAddr.String() + `)>?)[ \t]*$`)

// rcptLines returns the addresses of the first n lines of text that
// reRcptLine matches. It is reRcptLine.FindAllStringSubmatch(text, n)
// with the regexp run only on lines that start (after blanks) with '<' or
// "rcpt to:", the only lines it can match.
func rcptLines(text string, n int) []string {
	var out []string
	for start := 0; start < len(text) && len(out) < n; {
		i := start
		for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}
		end := len(text)
		if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
			end = i + j
		}
		// The '<' form needs an address right after the '<' and a '>' (or
		// ">:") at the end of the line: skip the regexp for other lines.
		if t := strings.TrimRight(text[i:end], " \t"); t != "" && (t[0] == '<' && len(t) > 2 && isLocalByte(t[1]) &&
			(t[len(t)-1] == '>' || strings.HasSuffix(t, ">:")) || len(t) >= 8 && strings.EqualFold(t[:8], "rcpt to:")) {
			if m := reRcptLine.FindStringSubmatch(text[start:end]); m != nil {
				out = append(out, m[1]+m[2])
			}
		}
		start = end + 1
	}
	return out
}

// asciiLower lower-cases ASCII letters only, keeping byte offsets.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

var reTranscript = regexp.MustCompile(`(?im)^\s*>>>\s*(rcpt to|rcpt|mail from|mail|data|ehlo|helo|starttls|\.)\b`)

// commandFor finds the SMTP command a failure answered: from the
// diagnostic itself, else from a session transcript (">>> DATA") in the
// report's text, preferring the last command before the recipient's reply.
func commandFor(diag string, d *errDoc, rcpt string) string {
	if c := findCommand(diag); c != "" {
		return c
	}
	text := d.text
	d.scan()
	locs := d.locs
	if len(locs) == 0 {
		return d.wholeCmd
	}
	limit := len(text)
	if rcpt != "" {
		if i := d.indexAddr(rcpt, locs[0][0]); i >= 0 {
			limit = i
		}
	}
	cmd := ""
	for _, l := range locs {
		if l[0] > limit {
			break
		}
		cmd = text[l[2]:l[3]]
	}
	if cmd == "" {
		return ""
	}
	if cmd == "." {
		return "DATA"
	}
	return findCommand("after " + cmd)
}

// hostOf returns the host name of a Remote-MTA / Reporting-MTA value such
// as "mx.example.jp [192.0.2.1]" or "mx.example.jp.".
func hostOf(v string) string {
	_, v = typedValue(v)
	if f := strings.Fields(v); len(f) > 0 {
		v = f[0]
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(v, "[]()<>"), "."))
}

// domainOf returns the domain part of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// preferStatus chooses between the Status field and the status code in the
// diagnostic text (sisimai's status.Prefer): the one whose class agrees
// with the reply code, else the more specific one; ambiguous field values
// (x.0.0, x.Y.0, 4.4.7, 4.7.0, 5.3.z, x.5.z) yield to the text.
func preferStatus(field, inText string, reply int) string {
	if field == "" {
		return inText
	}
	if inText == "" || field == inText {
		return field
	}
	if reply > 0 && field[0] != inText[0] {
		switch byte('0' + reply/100) {
		case field[0]:
			return field
		case inText[0]:
			return inText
		}
	}
	fz, tz := strings.HasSuffix(field, ".0.0"), strings.HasSuffix(inText, ".0.0")
	switch {
	case fz && !tz:
		return inText
	case fz || tz:
		return field
	case strings.Contains(field, ".0") && !strings.Contains(inText, ".0"):
		return inText
	case field == "4.4.7", field == "4.7.0", strings.HasPrefix(field, "5.3."),
		len(field) > 4 && field[1:4] == ".5." && strings.ContainsAny(field[4:5], "1245"):
		return inText
	case field == "5.1.1":
		if strings.Contains(inText, ".0") || strings.HasPrefix(inText, "5.5.") {
			return field
		}
		return inText
	case field == "5.1.3" && strings.HasPrefix(inText, "5.7."):
		return inText
	}
	return field
}
