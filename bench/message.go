package bench

import (
	"bytes"
	"strconv"
	"time"
)

// messageFactory builds test messages of roughly a fixed size: a few
// headers unique per message followed by a shared body of 76-character
// lines, none starting with '.', so no dot-stuffing is needed.
type messageFactory struct {
	from string
	body []byte
	date string
}

func newMessageFactory(from string, size int) *messageFactory {
	const headerEstimate = 200
	n := size - headerEstimate
	if n < 2 {
		n = 2
	}
	line := bytes.Repeat([]byte("x"), 76)
	body := make([]byte, 0, n+80)
	for len(body)+78 <= n {
		body = append(body, line...)
		body = append(body, '\r', '\n')
	}
	if rest := n - len(body); rest > 2 {
		body = append(body, line[:rest-2]...)
		body = append(body, '\r', '\n')
	} else if len(body) == 0 {
		body = append(body, 'x', '\r', '\n')
	}
	return &messageFactory{from: from, body: body, date: time.Now().Format(time.RFC1123Z)}
}

// appendMessage appends message number i addressed to the first
// recipient to dst.
func (f *messageFactory) appendMessage(dst []byte, i int, worker int, to string) []byte {
	dst = append(dst, "From: <"...)
	dst = append(dst, f.from...)
	dst = append(dst, ">\r\nTo: <"...)
	dst = append(dst, to...)
	dst = append(dst, ">\r\nSubject: bench message "...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, "\r\nDate: "...)
	dst = append(dst, f.date...)
	dst = append(dst, "\r\nMessage-ID: <bench."...)
	dst = strconv.AppendInt(dst, int64(worker), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, "@bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	dst = append(dst, f.body...)
	return dst
}

// recipient returns the address of recipient j of message i.
func recipient(domain string, i, j int) string {
	return "rcpt" + strconv.Itoa(i) + "." + strconv.Itoa(j) + "@" + domain
}
