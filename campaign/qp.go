package campaign

// appendQP is a quoted-printable encoder (RFC 2045 section 6.7) for the
// message bodies the engine builds, equivalent to mime/quotedprintable's
// Writer in text mode but writing straight into one buffer (the std
// writer handles a byte at a time and was a quarter of a send's CPU):
// "\n" and "\r\n" become CRLF hard breaks, '=' and bytes outside
// printable ASCII are =XX, space and tab are encoded before a line end,
// and lines are broken with a soft "=" so none exceeds 76 characters.
// Checked against mime/quotedprintable's reader by TestAppendQP and
// FuzzAppendQP.

const qpMaxLine = 76

// qpLiteral marks the bytes written as themselves (printable ASCII but
// '=', and space and tab, which need a look at what follows).
var qpLiteral = func() (t [256]bool) {
	for b := 33; b <= 126; b++ {
		t[b] = b != '='
	}
	t[' '], t['\t'] = true, true
	return t
}()

const upperHex = "0123456789ABCDEF"

func appendQP(dst []byte, s string) []byte {
	line := 0 // characters on the current output line
	for i := 0; i < len(s); i++ {
		// Fast path: a run of bytes written as themselves that fits on
		// the line without a soft break.
		j := i
		for room := i + qpMaxLine - 1 - line; j < len(s) && j < room; j++ {
			c := s[j]
			if !qpLiteral[c] || ((c == ' ' || c == '\t') && endsLine(s, j+1)) {
				break
			}
		}
		if j > i {
			dst = append(dst, s[i:j]...)
			line += j - i
			i = j - 1
			continue
		}
		b := s[i]
		if b == '\n' || (b == '\r' && i+1 < len(s) && s[i+1] == '\n') {
			if b == '\r' {
				i++
			}
			dst = append(dst, '\r', '\n')
			line = 0
			continue
		}
		literal := qpLiteral[b]
		if literal && (b == ' ' || b == '\t') {
			// Whitespace before a line end (or the end) would be lost.
			next := i + 1
			if next == len(s) || s[next] == '\n' || (s[next] == '\r' && next+1 < len(s) && s[next+1] == '\n') {
				literal = false
			}
		}
		n := 3
		if literal {
			n = 1
		}
		// Room for the token and a soft break's "=" after it, unless the
		// token ends the line anyway.
		if line+n > qpMaxLine-1 && !(line+n <= qpMaxLine && endsLine(s, i+1)) {
			dst = append(dst, '=', '\r', '\n')
			line = 0
		}
		if literal {
			dst = append(dst, b)
		} else {
			dst = append(dst, '=', upperHex[b>>4], upperHex[b&0x0f])
		}
		line += n
	}
	return dst
}

// endsLine reports whether position i of s is a line end or the end.
func endsLine(s string, i int) bool {
	return i == len(s) || s[i] == '\n' || (s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n')
}
