package ingest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
)

// RFC 5321 section 4.5.1: a server MUST accept RCPT TO:<postmaster>
// (case-insensitive, no domain) for its own postmaster. go-smtp (from
// v0.26.0) parses that forward-path itself and hands Rcpt the bare local
// part, in clear text and inside STARTTLS alike. postmasterConn, which
// sits between the socket and go-smtp in clear text (it exists for
// readDataDirect: it knows when go-smtp is in DATA), also rewrites that
// command line to RCPT TO:<postmasterSentinel>, as it did before go-smtp
// could parse it; Rcpt turns either form into the configured postmaster
// address.

// postmasterSentinel is the address go-smtp sees for <postmaster>. The
// .invalid TLD (RFC 2606) is never a real destination; a client that
// sends it literally reaches the local postmaster, as with <postmaster>.
const postmasterSentinel = "postmaster@postmaster.invalid"

// isLocalPostmaster reports whether Rcpt's address is the bare
// <postmaster> (as go-smtp passes it on, or as postmasterConn rewrote it).
func isLocalPostmaster(to string) bool {
	return strings.EqualFold(to, "postmaster") || strings.EqualFold(to, postmasterSentinel)
}

// rcptPostmaster adds the configured postmaster address to the
// transaction. It needs no relay permission: the client cannot choose the
// destination, so this is not a relay. Suppression still applies.
func (se *session) rcptPostmaster() error {
	to := se.s.postmaster
	if reason, ok := se.s.p.suppressed(se.stream(), to); ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("<postmaster>: recipient suppressed (%s)", reason)}
	}
	se.s.log.Info("mail for the local postmaster", "client", se.ip.String(), "postmaster", to)
	se.rcpts = append(se.rcpts, to)
	return nil
}

// postmasterListener wraps each accepted connection in a postmasterConn
// (not an implicit-TLS one: go-smtp must see its *tls.Conn).
type postmasterListener struct {
	net.Listener
	// direct: sessions may read DATA content themselves (readDataDirect).
	direct bool
}

func (l postmasterListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok {
		return c, nil
	}
	return newPostmasterConn(c, l.direct), nil
}

// What postmasterConn is reading: what go-smtp will do with the bytes.
const (
	pmCommand = iota // command lines, one per Read
	pmData           // DATA content up to its end marker
	pmBDAT           // a BDAT chunk
	pmRaw            // after STARTTLS: ciphertext, passed through
)

// States of the DATA end-marker scanner, as go-smtp's dataReader has them.
const (
	dBeginLine = iota
	dDot
	dDotCR
	dCR
	dData
)

// postmasterConn follows the SMTP dialogue closely enough to know when a
// line is a command: it hands go-smtp one command line per Read (so
// go-smtp never reads ahead of the command it is about to run), switches
// to DATA mode when go-smtp answers DATA with 354 and back at the end
// marker (scanned exactly as go-smtp's dataReader does), skips BDAT
// chunks (sized as go-smtp parses them) and passes everything through
// after a 220 to STARTTLS. Only in command mode is anything rewritten,
// and only a RCPT TO:<postmaster> line.
type postmasterConn struct {
	net.Conn
	br *bufio.Reader

	mu       sync.Mutex
	mode     int
	dstate   int    // end-marker scanner state in pmData
	bdatLeft uint64 // bytes of the BDAT chunk still to come
	pending  []byte // rest of a command line longer than go-smtp's read
	midLine  bool   // the last command-mode bytes did not end a line
	lastCmd  string // "DATA" or "STARTTLS" until its final reply is written
	wmid     bool   // the last write did not end a reply line
	// direct lets the session read DATA content itself (readDataDirect).
	direct bool
}

func newPostmasterConn(c net.Conn, direct bool) *postmasterConn {
	return &postmasterConn{Conn: c, br: bufio.NewReaderSize(c, 4096), direct: direct}
}

func (c *postmasterConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	mode, left := c.mode, c.bdatLeft
	if mode == pmEndFeed {
		c.pending = append(c.pending[:0], endMarker...)
		c.mode = pmCommand
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	switch mode {
	case pmTooLong:
		return 0, smtp.ErrTooLongLine
	case pmRaw:
		return c.br.Read(p)
	case pmBDAT:
		if uint64(len(p)) > left {
			p = p[:left]
		}
		n, err := c.br.Read(p)
		c.mu.Lock()
		if c.bdatLeft -= uint64(n); c.bdatLeft == 0 {
			c.mode = pmCommand
		}
		c.mu.Unlock()
		return n, err
	case pmData:
		return c.readData(p)
	}
	line, err := c.br.ReadSlice('\n')
	if len(line) == 0 {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	complete := line[len(line)-1] == '\n'
	if complete && !c.midLine {
		line = c.command(line)
	}
	c.midLine = !complete
	n := copy(p, line)
	if n < len(line) {
		c.pending = append(c.pending[:0], line[n:]...)
	}
	return n, nil
}

// readData returns buffered DATA content up to and including the end
// marker.
func (c *postmasterConn) readData(p []byte) (int, error) {
	if c.br.Buffered() == 0 {
		if _, err := c.br.Peek(1); err != nil {
			return 0, err
		}
	}
	buf, _ := c.br.Peek(min(c.br.Buffered(), len(p)))
	c.mu.Lock()
	n := 0
	for n < len(buf) {
		if c.dstate == dData { // only a CR can change the state: skip to it
			i := bytes.IndexByte(buf[n:], '\r')
			if i < 0 {
				n = len(buf)
				break
			}
			n += i + 1
			c.dstate = dCR
			continue
		}
		b := buf[n]
		n++
		switch c.dstate {
		case dBeginLine:
			switch b {
			case '.':
				c.dstate = dDot
			case '\r':
				c.dstate = dCR
			default:
				c.dstate = dData
			}
		case dDot:
			c.dstate = dData
			if b == '\r' {
				c.dstate = dDotCR
			}
		case dDotCR:
			c.dstate = dData
			if b == '\n' {
				c.dstate, c.mode = dBeginLine, pmCommand
			}
		case dCR:
			c.dstate = dData
			if b == '\n' {
				c.dstate = dBeginLine
			}
		case dData:
			if b == '\r' {
				c.dstate = dCR
			}
		}
		if c.mode != pmData {
			break
		}
	}
	c.mu.Unlock()
	copy(p, buf[:n])
	c.br.Discard(n)
	return n, nil
}

// command inspects one complete command line (parsed as go-smtp's
// parseCmd does) and returns it, rewritten if it is RCPT TO:<postmaster>.
func (c *postmasterConn) command(line []byte) []byte {
	s := strings.TrimRight(string(line), "\r\n")
	var verb, arg string
	switch {
	case strings.HasPrefix(strings.ToUpper(s), "STARTTLS"):
		verb = "STARTTLS"
	case len(s) == 4:
		verb = strings.ToUpper(s)
	case len(s) > 5 && s[4] == ' ':
		verb, arg = strings.ToUpper(s[:4]), strings.TrimSpace(s[5:])
	}
	switch verb {
	case "DATA", "STARTTLS":
		c.lastCmd = verb
	case "BDAT":
		if size, ok := bdatSize(arg); ok && size > 0 {
			c.mode, c.bdatLeft = pmBDAT, size
		}
	case "RCPT":
		if len(arg) < 3 || !strings.EqualFold(arg[:3], "TO:") {
			break
		}
		path := strings.TrimSpace(arg[3:])
		const bare = "<postmaster>"
		if len(path) >= len(bare) && strings.EqualFold(path[:len(bare)], bare) &&
			(len(path) == len(bare) || path[len(bare)] == ' ') {
			return []byte("RCPT TO:<" + postmasterSentinel + ">" + path[len(bare):] + "\r\n")
		}
	}
	return line
}

// bdatSize parses BDAT's arguments as go-smtp does; ok means go-smtp will
// read a chunk of size bytes after the command line.
func bdatSize(arg string) (uint64, bool) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	return size, err == nil
}

// Write passes go-smtp's replies on and watches for the final reply to
// DATA (354: content follows) and STARTTLS (220: TLS follows).
func (c *postmasterConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		if !c.wmid && len(line) >= 4 && line[3] == ' ' && c.lastCmd != "" {
			switch code := string(line[:3]); {
			case c.lastCmd == "DATA" && code == "354":
				c.mode, c.dstate = pmData, dBeginLine
			case c.lastCmd == "STARTTLS" && code == "220":
				c.mode = pmRaw
			}
			c.lastCmd = ""
		}
		c.wmid = i < 0
		rest = rest[len(line):]
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Modes after a DATA content read by readDataDirect.
const (
	pmEndFeed = iota + pmRaw + 1 // hand go-smtp's dataReader a bare end marker
	pmTooLong                    // a line was too long: every Read fails (go-smtp's lineLimitReader is sticky)
)

// endMarker is what go-smtp's dataReader reads after readDataDirect: it
// ends the content at once (its own reader then sees an empty message).
const endMarker = ".\r\n"

// readDataDirect reads the DATA content go-smtp has just asked for (its
// 354 is written, its reader has nothing buffered: postmasterConn hands
// it one command line per Read) straight from the connection's buffer,
// a run of bytes at a time instead of go-smtp's byte by byte: the same
// state machine as go-smtp's dataReader (dot-unstuffing, the end
// marker, and its quirks), its maxBytes rule (content of maxBytes or
// more is ErrDataTooLarge, read to its end) and lineLimitReader's count
// of maxLine (ErrTooLongLine, sticky). go-smtp's reader is then handed a
// bare end marker. ok is false when the connection is not at the start
// of DATA content in clear text; the caller reads go-smtp's reader then.
func (c *postmasterConn) readDataDirect(dst []byte, maxBytes int64, maxLine int) (out []byte, err error, ok bool) {
	c.mu.Lock()
	ok = c.direct && c.mode == pmData && c.dstate == dBeginLine && len(c.pending) == 0
	c.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	st := dBeginLine
	cur := 1 // lineLimitReader's count after the DATA line's LF
	var total int64
	tooLarge, tooLong := false, false
	emit := func(b []byte) {
		total += int64(len(b))
		if tooLarge {
			return
		}
		if maxBytes > 0 && total >= maxBytes {
			tooLarge = true
			return
		}
		dst = append(dst, b...)
	}
	// count adds seg (no CR in it) to the line length, as lineLimitReader
	// does byte by byte: an LF restarts the count at 1.
	count := func(seg []byte) {
		for {
			j := bytes.IndexByte(seg, '\n')
			if j < 0 {
				cur += len(seg)
				break
			}
			cur += j
			if maxLine > 0 && cur > maxLine {
				tooLong = true
			}
			cur = 1
			seg = seg[j+1:]
		}
		if maxLine > 0 && cur > maxLine {
			tooLong = true
		}
	}
	done := false
	for !done && !tooLong {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, err, true
			}
		}
		in, _ := c.br.Peek(c.br.Buffered())
		p := 0
		for p < len(in) && !tooLong {
			if st == dData {
				run := in[p:]
				i := bytes.IndexByte(run, '\r')
				if i < 0 {
					i = len(run)
				}
				count(run[:i])
				emit(run[:i])
				p += i
				if i < len(run) {
					st = dCR
					count(run[i : i+1])
					emit(run[i : i+1])
					p++
				}
				continue
			}
			b := in[p]
			p++
			if b == '\n' {
				cur = 0
			}
			if cur++; maxLine > 0 && cur > maxLine {
				tooLong = true
				break
			}
			keep := true
			switch st {
			case dBeginLine:
				switch b {
				case '.':
					st, keep = dDot, false
				case '\r':
					st = dCR
				default:
					st = dData
				}
			case dDot:
				st = dData
				if b == '\r' {
					st, keep = dDotCR, false
				}
			case dDotCR:
				st = dData
				if b == '\n' {
					keep, done = false, true
				}
			case dCR:
				st = dData
				if b == '\n' {
					st = dBeginLine
				}
			}
			if done {
				break
			}
			if keep {
				emit(in[p-1 : p])
			}
		}
		c.br.Discard(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tooLong {
		c.mode = pmTooLong
		return nil, smtp.ErrTooLongLine, true
	}
	c.mode, c.dstate, c.pending = pmEndFeed, dBeginLine, nil
	if tooLarge {
		return nil, smtp.ErrDataTooLarge, true
	}
	return dst, nil, true
}
