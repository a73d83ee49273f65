package delivery

import (
	"bufio"
	"bytes"
)

// writeDotStuffed writes body as the content of a DATA command followed by
// the terminating ".\r\n", exactly as net/textproto's DotWriter does
// (leading dots doubled, bare LF sent as CRLF, a final line break added if
// missing, an empty body sent as one empty line), but a line at a time instead of a byte at a time: stored
// messages are already CRLF text, so nearly every line is copied as is.
func writeDotStuffed(bw *bufio.Writer, body []byte) error {
	if len(body) == 0 {
		bw.WriteString("\r\n")
	}
	for len(body) > 0 {
		if body[0] == '.' {
			bw.WriteByte('.')
		}
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			bw.Write(body)
			if endsInCR(body) {
				bw.WriteByte('\n')
			} else {
				bw.WriteString("\r\n")
			}
			break
		}
		if endsInCR(body[:i]) {
			bw.Write(body[:i+1])
		} else {
			bw.Write(body[:i])
			bw.WriteString("\r\n")
		}
		body = body[i+1:]
	}
	bw.WriteString(".\r\n")
	return bw.Flush()
}

// endsInCR reports whether line ends in a CR that DotWriter would pair
// with a following LF: of a run of CRs, every second one is taken as
// plain data, so only an odd run counts.
func endsInCR(line []byte) bool {
	n := 0
	for n < len(line) && line[len(line)-1-n] == '\r' {
		n++
	}
	return n%2 == 1
}
