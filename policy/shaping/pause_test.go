package shaping

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/mta"
)

// TestPauseStream: a paused stream is refused (deferred, never bounced)
// by every acquire path, other streams are not, the pause survives a
// Reload, shows in Status, and ResumeStream lifts it.
func TestPauseStream(t *testing.T) {
	s, _ := newShaper(t, streamsConfig)
	ctx := context.Background()
	mkt := mta.Dest{Domain: "a.test", MXHost: "mx.bigmail.test", Stream: "marketing"}
	tx := mta.Dest{Domain: "a.test", MXHost: "mx.bigmail.test", Stream: "transactional"}
	s.PauseStream("marketing", "by alarm (test)")

	refused := func(what string, err error) {
		t.Helper()
		var pe *mta.PolicyError
		if !errors.As(err, &pe) || pe.Bounce || pe.Until.IsZero() || !strings.Contains(pe.Reason, "stream marketing paused by alarm (test)") {
			t.Fatalf("%s on a paused stream = %v, want a deferring *mta.PolicyError naming the pause", what, err)
		}
	}
	_, err := s.AcquireConn(ctx, mkt)
	refused("AcquireConn", err)
	_, _, ok, err := s.TryAcquireConn(ctx, mkt)
	refused("TryAcquireConn", err)
	if ok {
		t.Fatal("TryAcquireConn ok on a paused stream")
	}
	refused("AcquireMessage", s.AcquireMessage(ctx, mkt, "mkt1"))
	p, err := s.AcquireConn(ctx, tx)
	if err != nil {
		t.Fatalf("AcquireConn(transactional) while marketing is paused: %v", err)
	}
	p.Release()
	if err := s.AcquireMessage(ctx, tx, p.Egress.Name); err != nil {
		t.Fatalf("AcquireMessage(transactional): %v", err)
	}

	if err := s.Reload(parseShaping(t, streamsConfig)); err != nil {
		t.Fatal(err)
	}
	_, err = s.AcquireConn(ctx, mkt)
	refused("AcquireConn after Reload", err)
	if st := s.Status(); len(st.Paused) != 1 || st.Paused[0].Stream != "marketing" || st.Paused[0].Reason != "by alarm (test)" {
		t.Fatalf("Status().Paused = %+v", st.Paused)
	}
	if r, ok := s.StreamPaused("marketing"); !ok || r != "by alarm (test)" {
		t.Fatalf("StreamPaused = %q %v", r, ok)
	}

	if !s.ResumeStream("marketing") {
		t.Fatal("ResumeStream reported not paused")
	}
	if s.ResumeStream("marketing") {
		t.Fatal("second ResumeStream reported paused")
	}
	p, err = s.AcquireConn(ctx, mkt)
	if err != nil {
		t.Fatalf("AcquireConn after resume: %v", err)
	}
	p.Release()
	if err := s.AcquireMessage(ctx, mkt, p.Egress.Name); err != nil {
		t.Fatalf("AcquireMessage after resume: %v", err)
	}
}

// TestEgressesFollowReload: Egresses names the sources of the stream's
// pool under the rules in force, so a Reload that changes the pools
// changes the answer.
func TestEgressesFollowReload(t *testing.T) {
	s, _ := newShaper(t, streamsConfig)
	tests := []struct{ stream, want string }{
		{"marketing", "mkt1,mkt2"},
		{"transactional", "tx1"},
		{"other", "tx1"}, // no [shaping.streams] entry, no pool "default": the first pool
	}
	for _, tt := range tests {
		if got := strings.Join(s.Egresses(tt.stream), ","); got != tt.want {
			t.Errorf("before reload: Egresses(%q) = %s, want %s", tt.stream, got, tt.want)
		}
	}
	reloaded := strings.Replace(streamsConfig, `name = "mkt2"`, `name = "mkt3"`, 1) + `
[[shaping.pool]]
name = "default"
[[shaping.pool.source]]
name = "d1"
`
	if err := s.Reload(parseShaping(t, reloaded)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ stream, want string }{
		{"marketing", "mkt1,mkt3"},
		{"transactional", "tx1"},
		{"other", "d1"},
	} {
		if got := strings.Join(s.Egresses(tt.stream), ","); got != tt.want {
			t.Errorf("after reload: Egresses(%q) = %s, want %s", tt.stream, got, tt.want)
		}
	}
	none, _ := newShaper(t, "")
	if got := none.Egresses("marketing"); !slices.Equal(got, []string{"default"}) {
		t.Errorf("no pools: Egresses = %v, want [default]", got)
	}
}
