package events

import (
	"testing"

	"github.com/petrel-mta/petrel/policy/suppress"
)

// TestSuppressionEvents: an added suppression is a "suppressed" event in
// the real queue's log; a removal is none.
func TestSuppressionEvents(t *testing.T) {
	w := newWorld(t, testBounceConfig(), nil)
	hook := SuppressionEvents(w.q, quietLog())
	hook(suppress.Entry{Stream: "marketing", Address: "zoe@example.test", Reason: suppress.ReasonHardBounce}, false)
	hook(suppress.Entry{Stream: "marketing", Address: "amy@example.test", Reason: suppress.ReasonHardBounce}, true)
	evs := w.events("suppressed")
	if len(evs) != 1 || evs[0].Recipient != "zoe@example.test" || evs[0].Stream != "marketing" || evs[0].Reason != string(suppress.ReasonHardBounce) {
		t.Fatalf("suppressed events = %+v, want one for zoe@example.test", evs)
	}
}
