package delivery

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply limits: RFC 5321 allows 512-byte reply lines; real servers send
// longer ones, so lines are truncated rather than refused.
const (
	maxReplyLines = 128
	maxReplyText  = 8 << 10
)

// errMalformedReply is a reply that is not "ddd[ -]text" lines.
var errMalformedReply = errors.New("malformed SMTP reply")

// Reply is one SMTP reply, possibly multi-line.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Enhanced is the RFC 3463 enhanced status code ("5.1.1") of the first
	// line, or "".
	Enhanced string
	// Text is the reply text without codes; lines are joined with "\n".
	Text string
}

// String renders the reply as "550 5.1.1 text".
func (r Reply) String() string {
	var b strings.Builder
	b.Grow(len(r.Text) + len(r.Enhanced) + 5)
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if r.Text != "" {
		b.WriteByte(' ')
		b.WriteString(r.Text)
	}
	return b.String()
}

// Class returns the first digit of the code (2, 3, 4 or 5).
func (r Reply) Class() int { return r.Code / 100 }

// readReply reads one SMTP reply from br. scratch is a reusable buffer
// for the text (returned, possibly grown, for the next call). The only
// allocations are the final text and an uncommon enhanced code.
func readReply(br *bufio.Reader, scratch []byte) (Reply, []byte, error) {
	text := scratch[:0]
	var r Reply
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		long := false
		if err == bufio.ErrBufferFull {
			long = true
			err = nil
		}
		if err != nil {
			return Reply{}, text, fmt.Errorf("read reply: %w", err)
		}
		if n >= maxReplyLines {
			return Reply{}, text, fmt.Errorf("reply longer than %d lines: %w", maxReplyLines, errMalformedReply)
		}
		line = trimEOL(line)
		if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) ||
			line[0] < '2' || line[0] > '5' || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			if long {
				discardLine(br)
			}
			return Reply{}, text, fmt.Errorf("%w: %q", errMalformedReply, truncate(line, 64))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if n == 0 {
			r.Code = code
		} else if code != r.Code {
			if long {
				discardLine(br)
			}
			return Reply{}, text, fmt.Errorf("%w: code %d in a %d reply", errMalformedReply, code, r.Code)
		}
		last := len(line) == 3 || line[3] == ' '
		var t []byte
		if len(line) > 4 {
			t = line[4:]
		}
		if n == 0 {
			if e, rest, ok := enhanced(t, line[0]); ok {
				r.Enhanced, t = e, rest
			}
		} else if r.Enhanced != "" && len(t) > len(r.Enhanced) && string(t[:len(r.Enhanced)]) == r.Enhanced && t[len(r.Enhanced)] == ' ' {
			t = t[len(r.Enhanced)+1:]
		}
		if len(text) < maxReplyText {
			if n > 0 {
				text = append(text, '\n')
			}
			text = append(text, t[:min(len(t), maxReplyText-len(text))]...)
		}
		if long {
			discardLine(br)
		}
		if last {
			break
		}
	}
	r.Text = string(text)
	return r, text, nil
}

func trimEOL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// discardLine skips the rest of an over-long line.
func discardLine(br *bufio.Reader) {
	for {
		_, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// enhanced parses an RFC 3463 code "c.sss.ddd" at the start of t whose
// class matches the reply code's first digit, followed by space or end.
func enhanced(t []byte, class byte) (string, []byte, bool) {
	if len(t) < 5 || t[0] != class || t[1] != '.' {
		return "", t, false
	}
	i := 2
	d := 0
	for i < len(t) && isDigit(t[i]) {
		i++
		d++
	}
	if d < 1 || d > 3 || i >= len(t) || t[i] != '.' {
		return "", t, false
	}
	i++
	d = 0
	for i < len(t) && isDigit(t[i]) {
		i++
		d++
	}
	if d < 1 || d > 3 || (i < len(t) && t[i] != ' ') {
		return "", t, false
	}
	code := t[:i]
	rest := t[i:]
	if len(rest) > 0 {
		rest = rest[1:]
	}
	switch string(code) { // common codes without allocating
	case "2.0.0":
		return "2.0.0", rest, true
	case "2.1.0":
		return "2.1.0", rest, true
	case "2.1.5":
		return "2.1.5", rest, true
	case "2.6.0":
		return "2.6.0", rest, true
	case "5.1.1":
		return "5.1.1", rest, true
	case "4.7.1":
		return "4.7.1", rest, true
	case "5.7.1":
		return "5.7.1", rest, true
	}
	return string(code), rest, true
}
