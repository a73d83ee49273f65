package delivery

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func TestReadReply(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, in string
		want     Reply
		err      error
	}{
		{"simple", "250 OK\r\n", Reply{Code: 250, Text: "OK"}, nil},
		{"enhanced", "550 5.1.1 user unknown\r\n", Reply{Code: 550, Enhanced: "5.1.1", Text: "user unknown"}, nil},
		{"rare enhanced", "452 4.5.3 too many\r\n", Reply{Code: 452, Enhanced: "4.5.3", Text: "too many"}, nil},
		{"class mismatch is text", "550 4.1.1 odd\r\n", Reply{Code: 550, Text: "4.1.1 odd"}, nil},
		{"multi-line", "250-mx.test hi\r\n250-PIPELINING\r\n250 SIZE 100\r\n", Reply{Code: 250, Text: "mx.test hi\nPIPELINING\nSIZE 100"}, nil},
		{"multi-line enhanced stripped", "550-5.7.1 a\r\n550 5.7.1 b\r\n", Reply{Code: 550, Enhanced: "5.7.1", Text: "a\nb"}, nil},
		{"bare code", "354\r\n", Reply{Code: 354}, nil},
		{"bare LF", "221 bye\n", Reply{Code: 221, Text: "bye"}, nil},
		{"enhanced only", "250 2.0.0\r\n", Reply{Code: 250, Enhanced: "2.0.0"}, nil},
		{"long line truncated", "250 " + long + "\r\n", Reply{Code: 250, Text: long[:4092]}, nil},
		{"mixed codes", "250-a\r\n251 b\r\n", Reply{}, errMalformedReply},
		{"garbage", "hello\r\n", Reply{}, errMalformedReply},
		{"1xx", "199 no\r\n", Reply{}, errMalformedReply},
		{"bad separator", "250_x\r\n", Reply{}, errMalformedReply},
		{"eof mid reply", "250-a\r\n", Reply{}, nil},
		{"too many lines", strings.Repeat("250-a\r\n", 200) + "250 b\r\n", Reply{}, errMalformedReply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 4096), nil)
			if tc.name == "eof mid reply" {
				if err == nil {
					t.Fatal("no error at EOF")
				}
				return
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 OK\r\n", "550-5.1.1 a\r\n550 5.1.1 b\r\n", "354\r\n", "250-x\n250 y\n",
		"421 4.3.2 busy\r\n", "2", "250-", "550 5.1.10 null\r\n", "250 2.0.0\r\n", "500 5.999.999 x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(in)), 64)
		var scratch []byte
		for range 4 {
			r, s, err := readReply(br, scratch)
			scratch = s
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 {
				t.Fatalf("code %d accepted", r.Code)
			}
			if r.Enhanced != "" && r.Enhanced[0] != byte('0'+r.Code/100) {
				t.Fatalf("enhanced %q for %d", r.Enhanced, r.Code)
			}
			if len(r.Text) > maxReplyText {
				t.Fatalf("text %d bytes", len(r.Text))
			}
			if s := r.String(); !strings.HasPrefix(s, r.String()[:3]) {
				t.Fatal("String")
			}
		}
	})
}

func BenchmarkReadReply(b *testing.B) {
	in := "250-mx.example.com at your service\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n250 2.0.0 OK queued as 4Xyz\r\n"
	sr := strings.NewReader(in)
	br := bufio.NewReader(sr)
	var scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(in)
		br.Reset(sr)
		var err error
		if _, scratch, err = readReply(br, scratch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransaction delivers one message per iteration over a pooled
// connection to a loopback go-smtp MX (pipelined MAIL+RCPT+DATA).
func BenchmarkTransaction(b *testing.B) {
	f := newFixture(b)
	f.dns.Add("bench.test. 300 IN MX 10 mx.bench.test.", "mx.bench.test. 300 IN A 127.0.0.2")
	mx := f.startMX(b, "127.0.0.2", testnet.MXOptions{})
	d := f.deliverer(b, nil)
	body := []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 50))
	bt := batch("bench.test", "a@bench.test", "b@bench.test")
	b.ReportAllocs()
	for b.Loop() {
		if res := d.Deliver(context.Background(), bt, body); res[0].Outcome != delivered {
			b.Fatalf("%+v", res)
		}
	}
	if total, _ := mx.Conns(); total != 1 {
		b.Fatalf("%d connections", total)
	}
}
