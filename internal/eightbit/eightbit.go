// Package eightbit finds 8-bit data in messages and converts 8-bit MIME
// bodies to 7-bit, as RFC 6152 section 3 asks of a client whose next hop
// does not offer 8BITMIME and as Postfix does.
//
// The conversion re-encodes only what needs it: each leaf part whose body
// has octets above 127 becomes quoted-printable when it is text/* and
// base64 otherwise; multipart bodies are walked (their boundaries kept),
// message/rfc822 parts are converted recursively. Header fields are kept
// byte for byte except the Content-Transfer-Encoding of converted parts;
// 8-bit octets inside header fields are left as they are (Postfix does the
// same; such headers need SMTPUTF8, RFC 6532, not a body conversion).
// A message without MIME headers is treated as text/plain (RFC 2045
// section 5.2) and gets MIME-Version, Content-Type (charset utf-8 when
// the body is valid UTF-8, else unknown-8bit, RFC 1428) and
// Content-Transfer-Encoding fields. Once a message needs converting, its
// multipart bodies are written again part by part: preambles and epilogues
// are dropped (RFC 2046 says they carry nothing), everything else keeps
// its bytes.
package eightbit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// ErrCannotConvert is returned (wrapped) by To7bit for a message whose
// 8-bit part cannot be re-encoded: a malformed multipart body, a boundary
// the writer refuses, or base64 or an unknown encoding that claims to be
// 7-bit while carrying 8-bit octets. RFC 6152 then says to bounce
// (5.6.3, conversion required but not supported).
var ErrCannotConvert = errors.New("8-bit message cannot be converted to 7-bit")

// maxDepth bounds MIME nesting (multipart in message/rfc822 in ...).
const maxDepth = 32

// Has8bit reports whether b has an octet above 127. It tests eight octets
// at a time (delivery asks it of every body it sends to an 8BITMIME
// server: byte by byte it was ~30,000 instructions for a 4 KiB message).
func Has8bit(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// BodyStart returns the offset of the body of msg: just past the first
// empty line, or len(msg) when the message has no body.
func BodyStart(msg []byte) int {
	off := 0
	for off < len(msg) {
		end := bytes.IndexByte(msg[off:], '\n')
		if end < 0 {
			return len(msg)
		}
		line := msg[off : off+end]
		off += end + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return off
		}
	}
	return len(msg)
}

// BodyHas8bit reports whether the body of msg (after the header section)
// has an octet above 127: what a 7-bit-only next hop cannot take.
func BodyHas8bit(msg []byte) bool { return Has8bit(msg[BodyStart(msg):]) }

// To7bit returns msg with every 8-bit body part re-encoded to 7-bit (see
// the package comment). A message whose body is already 7-bit is returned
// unchanged (the same slice). Composite parts are streamed and only leaf
// parts are buffered, so memory stays about the message's size at any
// nesting depth.
func To7bit(msg []byte) ([]byte, error) {
	if !BodyHas8bit(msg) {
		return msg, nil
	}
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/8)
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCannotConvert, err)
	}
	start := func(hdr []byte) (io.Writer, error) {
		out.Write(hdr)
		return &out, nil
	}
	if err := convert(start, h, br, "text/plain", true, 0); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteString("\r\n")
	}
	return out.Bytes(), nil
}

func firstValue(h textproto.Header, key string) (string, bool) {
	if !h.Has(key) {
		return "", false
	}
	return h.Get(key), true
}

// starter writes an entity's header section and returns where its body
// goes.
type starter func(hdr []byte) (io.Writer, error)

// convert writes one entity, header h and body read from body, through
// start. defType is the content type an entity without Content-Type has
// (text/plain; message/rfc822 inside multipart/digest); top marks the
// message itself (or one inside message/rfc822), which gets a
// MIME-Version field when it lacks one and is rewritten. A leaf's body is
// written ending in a line break only if it did, so a part's body goes
// back before its boundary unchanged.
func convert(start starter, h textproto.Header, body io.Reader, defType string, top bool, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: MIME nesting deeper than %d", ErrCannotConvert, maxDepth)
	}
	ctype, hasCT := firstValue(h, "Content-Type")
	mt, params := defType, map[string]string(nil)
	if hasCT {
		var perr error
		if mt, params, perr = mime.ParseMediaType(ctype); perr != nil {
			mt = "text/plain" // RFC 2045 section 5.2
		}
	}
	var extra []string
	if _, ok := firstValue(h, "Mime-Version"); top && !ok {
		extra = append(extra, "MIME-Version: 1.0")
	}
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		w, err := start(header(h, identityCTE(cte), extra))
		if err != nil {
			return err
		}
		return convertMultipart(w, params["boundary"], body, child, depth)
	case mt == "message/rfc822":
		w, err := start(header(h, identityCTE(cte), extra))
		if err != nil {
			return err
		}
		br := bufio.NewReader(body)
		eh, err := textproto.ReadHeader(br)
		if err != nil {
			return fmt.Errorf("%w: message/rfc822 header: %v", ErrCannotConvert, err)
		}
		inner := func(hdr []byte) (io.Writer, error) {
			_, err := w.Write(hdr)
			return w, err
		}
		return convert(inner, eh, br, "text/plain", true, depth+1)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCannotConvert, err)
	}
	if !Has8bit(raw) {
		w, err := start(header(h, "", nil))
		if err == nil {
			_, err = w.Write(raw)
		}
		return err
	}
	if raw, err = decode(cte, raw); err != nil {
		return err
	}
	if !hasCT && mt == "text/plain" {
		charset := "unknown-8bit"
		if utf8.Valid(raw) {
			charset = "utf-8"
		}
		extra = append(extra, "Content-Type: "+mime.FormatMediaType("text/plain", map[string]string{"charset": charset}))
	}
	if strings.HasPrefix(mt, "text/") {
		w, err := start(header(h, "quoted-printable", extra))
		if err != nil {
			return err
		}
		qw := quotedprintable.NewWriter(w)
		if _, err := qw.Write(raw); err != nil {
			return err
		}
		return qw.Close()
	}
	w, err := start(header(h, "base64", extra))
	if err == nil {
		_, err = w.Write(base64Lines(raw))
	}
	return err
}

// identityCTE is the encoding of a composite entity (multipart/*,
// message/rfc822) once its content is 7-bit: "7bit" replaces "8bit" and
// "binary"; anything else is kept ("" keeps the field as it is).
func identityCTE(cte string) string {
	if cte == "8bit" || cte == "binary" {
		return "7bit"
	}
	return ""
}

// decode undoes the transfer encoding a leaf claims. 7bit, 8bit, binary
// and none are identity; quoted-printable that carries raw 8-bit octets is
// decoded (the octets pass through) so it can be encoded again.
func decode(cte string, body []byte) ([]byte, error) {
	switch cte {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, fmt.Errorf("%w: quoted-printable: %v", ErrCannotConvert, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %s part carries 8-bit octets", ErrCannotConvert, cte)
}

// base64Lines encodes b as base64 in lines of 76 characters (RFC 2045
// section 6.8) separated by CRLF.
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(append(out, enc[:76]...), '\r', '\n')
		enc = enc[76:]
	}
	return append(out, enc...)
}

// convertMultipart converts each part of a multipart body and writes them
// to w again with the same boundary.
func convertMultipart(w io.Writer, boundary string, body io.Reader, child string, depth int) error {
	if boundary == "" {
		return fmt.Errorf("%w: multipart without boundary", ErrCannotConvert)
	}
	mw := textproto.NewMultipartWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return fmt.Errorf("%w: boundary %q: %v", ErrCannotConvert, boundary, err)
	}
	mr := textproto.NewMultipartReader(body, boundary)
	start := func(hdr []byte) (io.Writer, error) {
		// Parse the rewritten header back so MultipartWriter writes it
		// byte for byte (textproto keeps raw fields).
		ph, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		if err != nil {
			return nil, fmt.Errorf("%w: part header: %v", ErrCannotConvert, err)
		}
		return mw.CreatePart(ph)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCannotConvert, err)
		}
		if err := convert(start, p.Header, p, child, false, depth+1); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotConvert, err)
	}
	return nil
}

// header writes h's fields in order, raw. When cte is set, the first
// Content-Transfer-Encoding field says cte and later ones are dropped (one
// is added at the end if there was none); extra fields are added before
// it.
func header(h textproto.Header, cte string, extra []string) []byte {
	var b bytes.Buffer
	seen := false
	for fs := h.Fields(); fs.Next(); {
		if cte != "" && fs.Key() == "Content-Transfer-Encoding" {
			if !seen {
				b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
				seen = true
			}
			continue
		}
		raw, err := fs.Raw()
		if err != nil {
			continue // read fields always have raw bytes
		}
		b.Write(raw)
	}
	for _, f := range extra {
		b.WriteString(f + "\r\n")
	}
	if cte != "" && !seen {
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
