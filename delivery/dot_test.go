package delivery

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// dotReference is net/textproto's DotWriter, the behaviour writeDotStuffed
// must reproduce byte for byte.
func dotReference(body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	dw.Write(body)
	dw.Close()
	bw.Flush()
	return out.Bytes()
}

func dotFast(body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	if err := writeDotStuffed(bw, body); err != nil {
		panic(err)
	}
	return out.Bytes()
}

func TestWriteDotStuffed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"crlf lines", "Subject: x\r\n\r\nhello\r\n"},
		{"leading dots", ".\r\n..\r\n.x\r\nok\r\n"},
		{"bare lf", "a\nb\n.c\n"},
		{"no final newline", "a\r\nlast"},
		{"final cr", "a\r"},
		{"lone cr inside", "a\rb\r\n"},
		{"dot only", "."},
		{"lines longer than the buffer", "0123456789012345678901234567890123456789\r\n.0123456789012345678901234567890\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := dotFast([]byte(tc.in)), dotReference([]byte(tc.in)); !bytes.Equal(got, want) {
				t.Fatalf("writeDotStuffed(%q) = %q, DotWriter gives %q", tc.in, got, want)
			}
		})
	}
}

func FuzzWriteDotStuffed(f *testing.F) {
	for _, s := range []string{"", "a\r\n.b\r\n", "x\n.\n", "\r", ".\r\n.", "a\r\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := dotFast(body), dotReference(body); !bytes.Equal(got, want) {
			t.Fatalf("writeDotStuffed(%q) = %q, DotWriter gives %q", body, got, want)
		}
	})
}

// BenchmarkDotStuffing writes a 4 KiB CRLF body: writeDotStuffed against
// net/textproto's byte-at-a-time DotWriter.
func BenchmarkDotStuffing(b *testing.B) {
	body := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n"), 62)
	bw := bufio.NewWriterSize(discard{}, 8192)
	b.Run("writeDotStuffed", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if err := writeDotStuffed(bw, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DotWriter", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			dw := textproto.NewWriter(bw).DotWriter()
			dw.Write(body)
			if err := dw.Close(); err != nil {
				b.Fatal(err)
			}
			bw.Flush()
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
