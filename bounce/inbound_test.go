package bounce

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type received struct {
	rcpt string
	raw  []byte
}

func startInbound(t *testing.T, h Handler, maxBytes int64) string {
	t.Helper()
	in, err := NewInbound(InboundConfig{Domain: "bounce.example.org", FBLAddresses: []string{"fbl@example.org"},
		Hostname: "mx.bounce.example.org", MaxMessageBytes: maxBytes, Handler: h,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := in.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// send runs one SMTP transaction and returns the codes of RCPT replies and
// of the final DATA reply (0 = accepted).
func send(t *testing.T, addr string, rcpts []string, body string) (rcptCodes []int, dataCode int) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("remote.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		rcptCodes = append(rcptCodes, smtpCode(err))
		if err == nil {
			ok++
		}
	}
	if ok == 0 {
		return rcptCodes, -1
	}
	w, err := c.Data()
	if err != nil {
		return rcptCodes, smtpCode(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return rcptCodes, smtpCode(err)
	}
	if err := w.Close(); err != nil {
		return rcptCodes, smtpCode(err)
	}
	return rcptCodes, 0
}

func TestInbound(t *testing.T) {
	var mu sync.Mutex
	var got []received
	fail := false
	addr := startInbound(t, func(ctx context.Context, rcpt string, raw []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("store down")
		}
		got = append(got, received{rcpt, raw})
		return nil
	}, 4096)

	v := VERP{Domain: "bounce.example.org", Secret: []byte("k")}
	verpAddr := v.Encode("MSG7", 2)
	dsn, err := BuildDSN(DSNParams{Hostname: "remote.example", Envelope: queueEnv(verpAddr),
		Original: []byte(originalMsg), Failed: failuresFor("a@dest.example"), Now: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		rcpts     []string
		body      string
		fail      bool
		wantRcpt  []int
		wantData  int
		wantCalls int
	}{
		{"verp dsn accepted", []string{verpAddr}, string(dsn), false, []int{0}, 0, 1},
		{"fbl address accepted", []string{"FBL@example.org"}, "Subject: x\r\n\r\nhi\r\n", false, []int{0}, 0, 1},
		{"relay refused", []string{"someone@elsewhere.example"}, "", false, []int{550}, -1, 0},
		{"mixed rcpts", []string{"x@elsewhere.example", "bounces+zz@bounce.example.org"}, "Subject: y\r\n\r\nhi\r\n", false, []int{550, 0}, 0, 1},
		{"too big", []string{verpAddr}, "Subject: z\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 120), false, []int{0}, 552, 0},
		{"handler error is temporary", []string{verpAddr}, "Subject: w\r\n\r\nhi\r\n", true, []int{0}, 451, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			got, fail = nil, tt.fail
			mu.Unlock()
			rc, dc := send(t, addr, tt.rcpts, tt.body)
			if len(rc) != len(tt.wantRcpt) {
				t.Fatalf("rcpt codes %v", rc)
			}
			for i := range rc {
				if rc[i] != tt.wantRcpt[i] {
					t.Errorf("rcpt %d code %d, want %d", i, rc[i], tt.wantRcpt[i])
				}
			}
			if dc != tt.wantData {
				t.Errorf("data code %d, want %d", dc, tt.wantData)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tt.wantCalls {
				t.Fatalf("handler calls %d, want %d", len(got), tt.wantCalls)
			}
			if tt.name == "verp dsn accepted" {
				rep, err := Parse(got[0].raw)
				if err != nil || len(rep.Bounces) != 1 || rep.Bounces[0].Reason != "userunknown" {
					t.Fatalf("parse received: %+v %v", rep, err)
				}
				id, idx, err := v.Decode(got[0].rcpt)
				if err != nil || id != "MSG7" || idx != 2 {
					t.Fatalf("decode rcpt %q: %s %d %v", got[0].rcpt, id, idx, err)
				}
			}
		})
	}
}

func TestNewInboundValidates(t *testing.T) {
	if _, err := NewInbound(InboundConfig{Domain: "d.example"}); err == nil {
		t.Error("no handler: want error")
	}
	if _, err := NewInbound(InboundConfig{Handler: func(context.Context, string, []byte) error { return nil }}); err == nil {
		t.Error("no domain: want error")
	}
}
