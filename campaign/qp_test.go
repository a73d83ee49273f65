package campaign

import (
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// checkQP decodes appendQP(s) with the standard reader: it must give s
// with CRLF line ends, and no encoded line may exceed 76 characters.
func checkQP(t *testing.T, s string) {
	t.Helper()
	enc := string(appendQP(nil, s))
	for _, l := range strings.Split(enc, "\r\n") {
		if len(l) > 76 {
			t.Fatalf("line of %d characters: %q", len(l), l)
		}
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bare CR or LF in %q", l)
		}
		if strings.HasSuffix(l, " ") || strings.HasSuffix(l, "\t") {
			t.Fatalf("trailing whitespace in %q", l)
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(enc)))
	if err != nil {
		t.Fatalf("decode %q: %v", enc, err)
	}
	want := strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	if string(dec) != want {
		t.Fatalf("round trip of %q:\n got %q\nwant %q\n enc %q", s, dec, want, enc)
	}
}

func TestAppendQP(t *testing.T) {
	for _, s := range []string{
		"", "plain", "a=b", "tail \nnext\t\r\nend ", "ünïcødé €", "lone\rcr",
		strings.Repeat("x", 75), strings.Repeat("x", 76), strings.Repeat("x", 77), strings.Repeat("x", 200),
		strings.Repeat("x", 74) + "==", strings.Repeat("x", 73) + "é", strings.Repeat("y", 75) + " \n",
		strings.Repeat("<p>Offer: <a href=\"https://shop.test/p/1\">product</a> at a price.</p>\n", 50),
	} {
		checkQP(t, s)
	}
	// Same bytes as the standard writer for ordinary text.
	s := strings.Repeat("Hello there, this is a line with = and é and some more words.\n", 20)
	var std strings.Builder
	w := quotedprintable.NewWriter(&std)
	io.WriteString(w, s)
	w.Close()
	if got := string(appendQP(nil, s)); got != std.String() {
		t.Errorf("differs from mime/quotedprintable:\n got %q\nwant %q", got[:200], std.String()[:200])
	}
}

func FuzzAppendQP(f *testing.F) {
	for _, s := range []string{"", "a \n", strings.Repeat("é", 40), "x\r\ny\rz=\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkQP(t, s) })
}

// BenchmarkQP compares appendQP with mime/quotedprintable's writer on a
// 20 KB HTML body:
//
//	go test -run '^$' -bench QP ./campaign
func BenchmarkQP(b *testing.B) {
	s := strings.Repeat("<p>Offer for Taipei: <a href=\"https://shop.test/p/12345?u=Ann\">product 12345</a> at a price you will like.</p>\n", 180)
	b.Run("appendQP", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		buf := make([]byte, 0, len(s)*2)
		for b.Loop() {
			buf = appendQP(buf[:0], s)
		}
	})
	b.Run("std", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		var out strings.Builder
		out.Grow(len(s) * 2)
		for b.Loop() {
			out.Reset()
			w := quotedprintable.NewWriter(&out)
			io.WriteString(w, s)
			w.Close()
		}
	})
}
