package eightbit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

// leaf is one decoded leaf part: its media type and decoded body.
type leaf struct {
	mediaType string
	body      string
}

// leaves decodes msg with go-message (an independent MIME reader that
// undoes the transfer encodings) and returns its leaf parts in order.
func leaves(t *testing.T, msg []byte) []leaf {
	t.Helper()
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("read: %v\n%s", err, msg)
	}
	var out []leaf
	digest := false // the cases nest no other multipart in a digest
	err = e.Walk(func(path []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		mt, _, _ := p.Header.ContentType()
		if digest && len(path) > 0 && !p.Header.Has("Content-Type") {
			mt = "message/rfc822" // RFC 2046 section 5.1.5
		}
		if strings.HasPrefix(mt, "multipart/") {
			digest = digest || mt == "multipart/digest"
			return nil
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			return err
		}
		if mt == "message/rfc822" {
			out = append(out, leaves(t, b)...)
			return nil
		}
		out = append(out, leaf{mt, strings.ReplaceAll(string(b), "\r\n", "\n")})
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v\n%s", err, msg)
	}
	return out
}

// leafBodies7bit checks that no line after the top header section has
// 8-bit octets, except the part header fields the cases put 8-bit octets
// in (header fields are not converted).
func leafBodies7bit(t *testing.T, msg []byte) {
	t.Helper()
	for _, line := range strings.Split(string(msg[BodyStart(msg):]), "\n") {
		if Has8bit([]byte(line)) && !strings.HasPrefix(line, "Content-Disposition:") && !strings.HasPrefix(line, "Subject:") {
			t.Errorf("8-bit line left in the body: %q", line)
		}
	}
}

func TestTo7bit(t *testing.T) {
	const crlf = "\r\n"
	tests := []struct {
		name string
		in   string
		// wantHeader lines must appear in the converted top header section
		// or a part header.
		want []string
	}{
		{"no MIME, UTF-8 (swaks --data)",
			"From: a@example.org" + crlf + "Subject: caf\xc3\xa9 raw" + crlf + crlf + "Gr\xc3\xbc\xc3\x9fe, caf\xc3\xa9" + crlf + "line two" + crlf,
			[]string{"MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "Subject: caf\xc3\xa9 raw"}},
		{"no MIME, Latin-1",
			"From: a@example.org" + crlf + crlf + "caf\xe9" + crlf,
			[]string{"Content-Type: text/plain; charset=unknown-8bit", "Content-Transfer-Encoding: quoted-printable"}},
		{"text/plain 8bit (Python smtplib)",
			"From: a@example.org" + crlf + "MIME-Version: 1.0" + crlf + "Content-Type: text/plain; charset=\"utf-8\"" + crlf +
				"Content-Transfer-Encoding: 8bit" + crlf + "X-After: kept" + crlf + crlf + "\xe2\x82\xac 10 " + strings.Repeat("\xc3\xa9", 60) + crlf,
			[]string{"Content-Transfer-Encoding: quoted-printable", "X-After: kept", "Content-Type: text/plain; charset=\"utf-8\""}},
		{"quoted-printable with raw 8-bit",
			"MIME-Version: 1.0" + crlf + "Content-Type: text/plain; charset=utf-8" + crlf + "Content-Transfer-Encoding: quoted-printable" + crlf + crlf +
				"caf\xc3\xa9 =C3=A9 trailing space =" + crlf + "joined" + crlf,
			[]string{"Content-Transfer-Encoding: quoted-printable"}},
		{"multipart with text, html, binary attachment and a 7-bit part",
			"MIME-Version: 1.0" + crlf + "Content-Type: multipart/mixed; boundary=\"b1\"" + crlf + "Content-Transfer-Encoding: 8bit" + crlf + crlf +
				"preamble" + crlf +
				"--b1" + crlf + "Content-Type: multipart/alternative; boundary=b2" + crlf + crlf +
				"--b2" + crlf + "Content-Type: text/plain; charset=utf-8" + crlf + "Content-Transfer-Encoding: 8bit" + crlf + crlf + "na\xc3\xafve" + crlf +
				"--b2" + crlf + "Content-Type: text/html; charset=utf-8" + crlf + crlf + "<p>na\xc3\xafve</p>" + crlf +
				"--b2--" + crlf +
				"--b1" + crlf + "Content-Type: application/octet-stream" + crlf + "Content-Disposition: attachment; filename=\"r\xc3\xa9sum\xc3\xa9.bin\"" + crlf +
				"Content-Transfer-Encoding: binary" + crlf + crlf + "\x00\x01\xff\xfe" + strings.Repeat("\x80", 100) + crlf +
				"--b1" + crlf + "Content-Type: text/plain" + crlf + crlf + "plain ascii" + crlf + crlf +
				"--b1--" + crlf + "epilogue" + crlf,
			[]string{"Content-Type: multipart/mixed; boundary=\"b1\"", "Content-Transfer-Encoding: 7bit", "Content-Transfer-Encoding: base64"}},
		{"message/rfc822 inside multipart/digest",
			"MIME-Version: 1.0" + crlf + "Content-Type: multipart/digest; boundary=d" + crlf + crlf +
				"--d" + crlf + crlf + "Subject: inner" + crlf + crlf + "inn\xc3\xa9r" + crlf +
				"--d--" + crlf,
			[]string{"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			out, err := To7bit(in)
			if err != nil {
				t.Fatal(err)
			}
			if BodyHas8bit(out) && !strings.Contains(tt.name, "attachment") {
				t.Errorf("body still 8-bit:\n%s", out)
			}
			leafBodies7bit(t, out)
			for _, w := range tt.want {
				if !strings.Contains(string(out), w+crlf) {
					t.Errorf("converted message lacks %q:\n%s", w, out)
				}
			}
			for _, l := range strings.Split(string(out), crlf) {
				if len(l) > 998 {
					t.Errorf("line of %d octets", len(l))
				}
			}
			// Decoding both with an independent MIME reader gives the same
			// parts and the same content.
			got, want := leaves(t, out), leaves(t, in)
			if len(got) != len(want) {
				t.Fatalf("%d leaves, want %d:\n%s", len(got), len(want), out)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("leaf %d: got %q, want %q", i, got[i], want[i])
				}
			}
			// Converting again changes nothing.
			again, err := To7bit(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("second conversion differs (err %v)", err)
			}
		})
	}
}

func TestTo7bitUnchanged(t *testing.T) {
	msg := []byte("Subject: caf\xc3\xa9\r\n\r\nascii body only\r\n") // 8-bit header only
	out, err := To7bit(msg)
	if err != nil || &out[0] != &msg[0] {
		t.Fatalf("a message with a 7-bit body must come back as is (err %v)", err)
	}
}

func TestTo7bitErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"base64 with 8-bit octets", "MIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAA\xff\r\n"},
		{"unknown encoding", "MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\xff\r\n"},
		{"multipart without boundary", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n\xff\r\n"},
		{"multipart never closed", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n\xff\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := To7bit([]byte(tt.in)); !errors.Is(err, ErrCannotConvert) {
				t.Fatalf("err %v, want ErrCannotConvert", err)
			}
		})
	}
}

func TestBodyStart(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"A: b\r\n\r\nbody", 8},
		{"A: b\n\nbody", 6},
		{"A: b\r\n", 6},
		{"\r\nbody", 2},
		{"", 0},
	}
	for _, tt := range tests {
		if got := BodyStart([]byte(tt.in)); got != tt.want {
			t.Errorf("BodyStart(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzTo7bit(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\ncaf\xc3\xa9\r\n"))
	f.Add([]byte("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\xff\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\n\xe9\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := To7bit(msg)
		if err != nil {
			if !errors.Is(err, ErrCannotConvert) {
				t.Fatalf("error not ErrCannotConvert: %v", err)
			}
			return
		}
		if !BodyHas8bit(msg) && !bytes.Equal(out, msg) {
			t.Fatal("7-bit body changed")
		}
		if _, err := To7bit(out); err != nil {
			t.Fatalf("converted output does not convert again: %v", err)
		}
	})
}

// nested returns a message with depth levels of multipart/mixed around a
// text/plain leaf.
func nested(depth int, leaf string) []byte {
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + leaf + "\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// TestTo7bitNesting: deep nesting is refused past maxDepth, and memory
// does not grow with depth (composite parts are streamed, not copied per
// level).
func TestTo7bitNesting(t *testing.T) {
	if _, err := To7bit(nested(maxDepth+2, "caf\xc3\xa9")); !errors.Is(err, ErrCannotConvert) {
		t.Fatalf("nesting %d: err %v, want ErrCannotConvert", maxDepth+2, err)
	}
	leaf := strings.Repeat("Lorem ipsum dolor sit amet, caf\xc3\xa9 consectetur adipiscing elit.\r\n", 16<<10) // ~1 MiB
	msg := nested(20, leaf)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := To7bit(msg)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaves(t, out); len(l) != 1 || l[0].body != strings.ReplaceAll(leaf, "\r\n", "\n") {
		t.Fatal("nested leaf changed")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*uint64(len(msg)) {
		t.Errorf("converting a %d-byte message nested 20 deep allocated %d bytes", len(msg), alloc)
	}
}

// TestHas8bitEveryPosition: an 8-bit octet is found at every offset of
// buffers around the eight-octet stride, and none is reported in 7-bit
// ones.
func TestHas8bitEveryPosition(t *testing.T) {
	for n := 0; n <= 40; n++ {
		clean := bytes.Repeat([]byte{0x7f}, n)
		if Has8bit(clean) {
			t.Fatalf("Has8bit(%d × 0x7f) = true", n)
		}
		for i := 0; i < n; i++ {
			for _, c := range []byte{0x80, 0xc3, 0xff} {
				b := bytes.Clone(clean)
				b[i] = c
				if !Has8bit(b) {
					t.Fatalf("Has8bit: 0x%02x at %d of %d not found", c, i, n)
				}
				if !Has8bit(b[i:]) || Has8bit(b[:i]) {
					t.Fatalf("Has8bit: wrong answer for a slice around offset %d of %d", i, n)
				}
			}
		}
	}
}
