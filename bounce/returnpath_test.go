package bounce

import (
	"testing"

	"github.com/petrel-mta/petrel/queue"
)

// TestReturnPath: one recipient gets a VERP address naming it, several
// get one naming the message only, and no domain or secret means none.
func TestReturnPath(t *testing.T) {
	secret := []byte("s3cret")
	if ReturnPath("", secret) != nil || ReturnPath("bounce.example.com", nil) != nil {
		t.Fatal("ReturnPath without domain or secret is not nil")
	}
	rp := ReturnPath("bounce.example.com", secret)
	v := VERP{Domain: "bounce.example.com", Secret: secret}
	b := &queue.Batch{MsgID: "msg1", Rcpts: []queue.Rcpt{{Index: 3, Addr: "a@x.test"}, {Index: 7, Addr: "b@x.test"}}}
	tests := []struct {
		idx      []int
		wantRcpt int
	}{
		{[]int{1}, 7},
		{[]int{0}, 3},
		{[]int{0, 1}, AnyRecipient},
	}
	for _, tt := range tests {
		addr := rp(b, tt.idx)
		id, rcpt, err := v.Decode(addr)
		if err != nil || id != "msg1" || rcpt != tt.wantRcpt {
			t.Errorf("ReturnPath(%v) = %q decoding to (%q, %d, %v), want (msg1, %d)", tt.idx, addr, id, rcpt, err, tt.wantRcpt)
		}
	}
}
