package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{ms(7)}, 50, ms(7)},
		{"single p99", []time.Duration{ms(7)}, 99, ms(7)},
		{"two p50 is lower", []time.Duration{ms(1), ms(2)}, 50, ms(1)},
		{"two p51 is upper", []time.Duration{ms(1), ms(2)}, 51, ms(2)},
		{"hundred p50", hundred, 50, ms(50)},
		{"hundred p99", hundred, 99, ms(99)},
		{"hundred p99.5", hundred, 99.5, ms(100)},
		{"hundred p100", hundred, 100, ms(100)},
		{"hundred p0", hundred, 0, ms(1)},
		{"ten p90", hundred[:10], 90, ms(9)},
		{"ten p91", hundred[:10], 91, ms(10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.in), tc.p, got, tc.want)
			}
		})
	}
}

func TestMedianAndSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 0.5, 8, 100, 7}, 8},
	}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	lat := []time.Duration{ms(5), ms(1), ms(3), ms(2), ms(4)}
	s := Summarize(lat)
	if s.N != 5 || s.P50 != ms(3) || s.P99 != ms(5) || s.Max != ms(5) {
		t.Errorf("Summarize = %+v", s)
	}
}

func TestLine(t *testing.T) {
	l := NewLine("noop").Set("msgs_per_s", 1234.5678).Set("n", 20).Set("p50", 1500*time.Microsecond).Set("note", "a b")
	l.Set("n", 30)
	want := "scenario=noop msgs_per_s=1234.57 n=30 p50=1.500ms note=a_b"
	if got := l.String(); got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

// sendPlain sends one message with go-smtp's client without TLS.
func sendPlain(t *testing.T, addr, from string, to []string, r io.Reader) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, r); err != nil {
		return err
	}
	return c.Quit()
}

func startSink(t *testing.T, o SinkOptions) *Sink {
	t.Helper()
	s, err := StartSink(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestSinkCountsGoSMTPClient drives the sink with go-smtp's own client, an
// implementation independent of the load generator.
func TestSinkCountsGoSMTPClient(t *testing.T) {
	tests := []struct {
		name  string
		msgs  int
		rcpts int
	}{
		{"one message one rcpt", 1, 1},
		{"five messages three rcpts", 5, 3},
		{"twenty messages one rcpt", 20, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSink(t, SinkOptions{})
			before := time.Now()
			for i := 0; i < tc.msgs; i++ {
				var to []string
				for j := 0; j < tc.rcpts; j++ {
					to = append(to, recipient("sink.test", i, j))
				}
				body := "Subject: x\r\n\r\nhello\r\n"
				if err := sendPlain(t, s.Addr(), "a@b.test", to, strings.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if st.Messages != int64(tc.msgs) || st.Recipients != int64(tc.msgs*tc.rcpts) {
				t.Errorf("stats = %+v, want %d messages %d recipients", st, tc.msgs, tc.msgs*tc.rcpts)
			}
			if st.Sessions != int64(tc.msgs) {
				t.Errorf("sessions = %d, want %d", st.Sessions, tc.msgs)
			}
			if st.First.Before(before) || st.Last.Before(st.First) || st.Last.After(time.Now()) {
				t.Errorf("first/last = %v/%v not within the run", st.First, st.Last)
			}
			if st.Bytes < int64(tc.msgs*len("Subject: x\r\n\r\nhello\r\n")) {
				t.Errorf("bytes = %d too small", st.Bytes)
			}
		})
	}
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestLoadgenToSink(t *testing.T) {
	tlsCfg := selfSignedTLS(t)
	tests := []struct {
		name string
		load SMTPLoad
		tls  bool
	}{
		{"one session", SMTPLoad{Sessions: 1, Messages: 10, Size: 1024, Recipients: 1}, false},
		{"pipelined many sessions", SMTPLoad{Sessions: 8, Messages: 200, Size: 4096, Recipients: 1}, false},
		{"multi rcpt pipelined", SMTPLoad{Sessions: 4, Messages: 40, Size: 2048, Recipients: 5}, false},
		{"multi rcpt no pipelining", SMTPLoad{Sessions: 4, Messages: 40, Size: 2048, Recipients: 3, NoPipelining: true}, false},
		{"reconnect every 3", SMTPLoad{Sessions: 2, Messages: 20, Size: 512, Recipients: 2, PerSession: 3}, false},
		{"starttls", SMTPLoad{Sessions: 3, Messages: 30, Size: 4096, Recipients: 2, StartTLS: true}, true},
		{"tiny size", SMTPLoad{Sessions: 1, Messages: 3, Size: 10, Recipients: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := SinkOptions{}
			if tc.tls {
				o.TLSConfig = tlsCfg
			}
			s := startSink(t, o)
			ld := tc.load
			ld.Addr = s.Addr()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := RunSMTP(ctx, ld)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(ld.Messages)
			if res.Accepted != n || res.Errors != 0 || res.TempFailed+res.PermFailed != 0 {
				t.Fatalf("result = accepted %d errors %d temp %d perm %d (first err %v), want %d accepted", res.Accepted, res.Errors, res.TempFailed, res.PermFailed, res.FirstErr, n)
			}
			if len(res.Latencies) != ld.Messages {
				t.Errorf("latencies = %d, want %d", len(res.Latencies), ld.Messages)
			}
			st := s.Stats()
			if st.Messages != n || st.Recipients != n*int64(ld.Recipients) {
				t.Errorf("sink = %d messages %d recipients, want %d and %d", st.Messages, st.Recipients, n, n*int64(ld.Recipients))
			}
			if ld.Size > 300 && st.Bytes < n*int64(ld.Size)*9/10 {
				t.Errorf("sink bytes = %d, want about %d", st.Bytes, n*int64(ld.Size))
			}
			// Each connection sends at most PerSession messages.
			if ld.PerSession > 0 {
				if minSess := (n + int64(ld.PerSession) - 1) / int64(ld.PerSession); st.Sessions < minSess {
					t.Errorf("sessions = %d, want at least %d", st.Sessions, minSess)
				}
				return
			}
			maxSess := int64(ld.Sessions)
			if tc.tls {
				maxSess *= 2 // go-smtp starts a new session after STARTTLS
			}
			if st.Sessions > maxSess {
				t.Errorf("sessions = %d, want at most %d", st.Sessions, maxSess)
			}
		})
	}
}

func TestSinkFaultShare(t *testing.T) {
	tests := []struct {
		name       string
		temp, perm int
		msgs       int
	}{
		{"none", 0, 0, 100},
		{"ten percent temp", 100, 0, 1000},
		{"five percent perm", 0, 50, 1000},
		{"both", 200, 100, 2000},
		{"all temp", 1000, 0, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSink(t, SinkOptions{TempFailPermille: tc.temp, PermFailPermille: tc.perm})
			res, err := RunSMTP(context.Background(), SMTPLoad{Addr: s.Addr(), Sessions: 4, Messages: tc.msgs, Size: 300, Recipients: 2})
			if err != nil {
				t.Fatal(err)
			}
			wantTemp := int64(tc.msgs / 1000 * tc.temp)
			wantPerm := int64(tc.msgs / 1000 * tc.perm)
			if tc.msgs < 1000 {
				wantTemp = int64(min(tc.msgs, tc.temp))
				wantPerm = int64(max(0, min(tc.msgs-tc.temp, tc.perm)))
			}
			wantOK := int64(tc.msgs) - wantTemp - wantPerm
			st := s.Stats()
			if st.TempFailed != wantTemp || st.PermFailed != wantPerm || st.Messages != wantOK || st.Recipients != 2*wantOK {
				t.Errorf("sink = %+v, want temp %d perm %d ok %d", st, wantTemp, wantPerm, wantOK)
			}
			if res.TempFailed != wantTemp || res.PermFailed != wantPerm || res.Accepted != wantOK || res.Errors != 0 {
				t.Errorf("loadgen = temp %d perm %d ok %d errors %d (%v), want %d %d %d", res.TempFailed, res.PermFailed, res.Accepted, res.Errors, res.FirstErr, wantTemp, wantPerm, wantOK)
			}
		})
	}
	if _, err := StartSink(SinkOptions{TempFailPermille: 600, PermFailPermille: 500}); err == nil {
		t.Error("shares over 1000 per mille accepted")
	}
}

func TestSinkDKIM(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{"s1._domainkey.bench.test": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)}
	sign := func(msg string) string {
		var out bytes.Buffer
		err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: "bench.test", Selector: "s1", Signer: key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	msg := "From: <a@bench.test>\r\nTo: <b@sink.test>\r\nSubject: hi\r\n\r\nbody line\r\n"
	signed := sign(msg)
	tests := []struct {
		name string
		msg  string
		want dkimResult
	}{
		{"signed", signed, dkimPass},
		{"unsigned", msg, dkimNone},
		{"tampered body", strings.Replace(signed, "body line", "body lime", 1), dkimFail},
		{"unknown selector", strings.Replace(signed, "s=s1", "s=s2", 1), dkimFail},
	}
	s := startSink(t, SinkOptions{DKIMRecords: records})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			if err := sendPlain(t, s.Addr(), "a@bench.test", []string{"b@sink.test"}, strings.NewReader(tc.msg)); err != nil {
				t.Fatal(err)
			}
			after := s.Stats()
			got := [3]int64{after.DKIMFail - before.DKIMFail, after.DKIMPass - before.DKIMPass, after.DKIMNone - before.DKIMNone}
			var want [3]int64
			want[tc.want] = 1
			if got != want {
				t.Errorf("case %d: fail/pass/none = %v, want %v", i, got, want)
			}
		})
	}
}

// TestRunSMTPRate: a paced load (Rate) to a real sink sends every message
// no faster than the rate (message i not before start + i/Rate), all
// accepted, and stops at once when its context ends.
func TestRunSMTPRate(t *testing.T) {
	s := startSink(t, SinkOptions{})
	start := time.Now()
	res, err := RunSMTP(context.Background(), SMTPLoad{Addr: s.Addr(), Sessions: 3, Messages: 21, Size: 300, Rate: 40})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 500*time.Millisecond || res.Accepted != 21 || s.Stats().Messages != 21 {
		t.Fatalf("21 messages at 40/s: %s, %d accepted, sink %d", took, res.Accepted, s.Stats().Messages)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	res, _ = RunSMTP(ctx, SMTPLoad{Addr: s.Addr(), Sessions: 2, Messages: 1000, Size: 300, Rate: 10})
	if took := time.Since(start); took > 2*time.Second || res.Accepted > 5 {
		t.Fatalf("cancelled paced load: %s, %d accepted", took, res.Accepted)
	}
}
