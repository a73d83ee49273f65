package suppress

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOutboxRecordsEveryChange: Add, Remove and Import each commit an
// outbox record with the change; the records survive a reopen until
// acknowledged, in order, and sequence numbers keep growing after it.
func TestOutboxRecordsEveryChange(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if _, err := s.Add(Entry{Address: "a@x.test", Stream: "marketing", Reason: ReasonComplaint, Source: "fbl", Time: when}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove("marketing", "A@x.test"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Import(strings.NewReader("b@x.test,*,hard_bounce\nc@x.test\n"), "csv"); err != nil || n != 2 {
		t.Fatalf("import: %d %v", n, err)
	}
	select {
	case <-s.OutboxReady():
	default:
		t.Fatal("OutboxReady not signalled after commits")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Outbox(0)
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for i, c := range got {
		if i > 0 && c.Seq <= got[i-1].Seq {
			t.Errorf("outbox seq not increasing: %d after %d", c.Seq, got[i-1].Seq)
		}
		desc = append(desc, fmt.Sprintf("%s/%s/%s/%v", c.Entry.Stream, c.Entry.Address, c.Entry.Reason, c.Removed))
	}
	want := "marketing/a@x.test/complaint/false marketing/a@x.test/complaint/true */b@x.test/hard_bounce/false */c@x.test/manual/false"
	if strings.Join(desc, " ") != want {
		t.Fatalf("outbox after reopen:\n got %s\nwant %s", strings.Join(desc, " "), want)
	}
	if !got[0].Entry.Time.Equal(when) || got[0].Entry.Source != "fbl" {
		t.Errorf("first change lost its time/source: %+v", got[0].Entry)
	}
	// Acknowledge the first two; two remain, and a new change sorts last.
	if err := s.AckOutbox(got[1].Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Entry{Address: "d@x.test"}); err != nil {
		t.Fatal(err)
	}
	rest, err := s.Outbox(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 3 || rest[0].Entry.Address != "b@x.test" || rest[2].Entry.Address != "d@x.test" || rest[2].Seq <= got[3].Seq {
		t.Fatalf("after ack: %+v", rest)
	}
	// The outbox never shows up as suppression entries.
	page, err := s.List("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 3 {
		t.Fatalf("List sees %d entries, want 3 (b, c, d): %+v", len(page.Entries), page.Entries)
	}
}
