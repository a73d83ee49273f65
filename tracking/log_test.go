package tracking

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestLogAggregatesAndClose records a mix of human, machine and repeated
// engagements from concurrent callers, closes the log (the SIGTERM path),
// reopens it and checks every aggregate and the raw log.
func TestLogAggregatesAndClose(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(dir, LogOptions{SyncInterval: 50 * time.Millisecond, Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	done := make(chan struct{})
	const people = 200
	for w := 0; w < 4; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := w; i < people; i += 4 {
				rcpt := fmt.Sprintf("c%d", i)
				msg := "camp1:" + rcpt
				// Every person: an Apple MPP prefetch, then two human opens.
				l.Record(ctx, Engagement{Kind: Open, Campaign: "camp1", Message: msg, Recipient: rcpt, Time: at, Machine: true, MachineReason: "apple_mpp"})
				l.Record(ctx, Engagement{Kind: Open, Campaign: "camp1", Message: msg, Recipient: rcpt, Time: at.Add(time.Hour)})
				l.Record(ctx, Engagement{Kind: Open, Campaign: "camp1", Message: msg, Recipient: rcpt, Time: at.Add(time.Hour), Proxy: "gmail"})
				// Every other person clicks link 1 twice; every fourth is only scanned.
				if i%2 == 0 {
					l.Record(ctx, Engagement{Kind: Click, Campaign: "camp1", Message: msg, Recipient: rcpt, Link: 1, Time: at.Add(time.Hour)})
					l.Record(ctx, Engagement{Kind: Click, Campaign: "camp1", Message: msg, Recipient: rcpt, Link: 1, Time: at.Add(time.Hour)})
				} else if i%4 == 1 {
					l.Record(ctx, Engagement{Kind: Click, Campaign: "camp1", Message: msg, Recipient: rcpt, Link: 0, Time: at, Machine: true, MachineReason: "too_soon"})
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	l.Record(ctx, Engagement{Kind: Open, Campaign: "other", Message: "x", Recipient: "c1", Time: at})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Record(ctx, Engagement{Kind: Open, Campaign: "camp1", Message: "late", Time: at}) // after Close: ignored

	l, err = OpenLog(dir, LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := l.CampaignStats("camp1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		CntOpens: 2 * people, CntOpensMachine: people, CntUniqueOpens: people, CntUniqueOpensAny: people, CntOpensProxy: people,
		CntClicks: people, CntClicksMachine: people / 4, CntUniqueClicks: people / 2, CntUniqueClicksAny: people/2 + people/4,
	}
	for k, v := range want {
		if st.Counters[k] != v {
			t.Errorf("%s = %d, want %d", k, st.Counters[k], v)
		}
	}
	if len(st.Counters) != len(want) {
		t.Errorf("unexpected counters: %v", st.Counters)
	}
	if st.Links[1] != people || len(st.Links) != 1 {
		t.Errorf("links %v", st.Links)
	}
	hourly, err := l.Hourly("camp1", CntOpens)
	if err != nil {
		t.Fatal(err)
	}
	if hourly[at.Truncate(time.Hour).Add(time.Hour).Unix()] != 2*people || len(hourly) != 1 {
		t.Errorf("hourly human opens %v", hourly)
	}
	if other, _ := l.CampaignStats("other"); other.Counters[CntUniqueOpens] != 1 {
		t.Errorf("other campaign %v", other.Counters)
	}
	var all []Engagement
	for after := uint64(0); ; {
		es, last, err := l.Read(after, 333)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		all, after = append(all, es...), last
	}
	if wantN := 3*people + people + people/4 + 1; len(all) != wantN {
		t.Fatalf("log holds %d engagements, want %d", len(all), wantN)
	}
	// New records after reopening continue the sequence.
	l.Record(ctx, Engagement{Kind: Click, Campaign: "camp1", Message: "camp1:c0", Recipient: "c0", Link: 3, Time: at})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	es, _, _ := l.Read(uint64(len(all)), 10)
	if len(es) != 1 || es[0].Link != 3 {
		t.Fatalf("after reopen: %+v", es)
	}
}

// TestRecordWithDoneContext: with room in the buffer an engagement is
// recorded even when the caller's context has already ended (the
// request's client went away after the pixel was asked for).
func TestRecordWithDoneContext(t *testing.T) {
	l, err := OpenLog(t.TempDir(), LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 100; i++ {
		l.Record(ctx, Engagement{Kind: Open, Campaign: "c", Message: fmt.Sprint(i), Recipient: fmt.Sprint(i), Time: time.Now()})
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.CampaignStats("c"); st.Counters[CntUniqueOpens] != 100 {
		t.Fatalf("recorded %d of 100 with a done context", st.Counters[CntUniqueOpens])
	}
}

// TestRecordEncoding: an engagement survives the binary record round
// trip field for field, and a JSON record of an older version still
// reads.
func TestRecordEncoding(t *testing.T) {
	for _, e := range []Engagement{
		{Kind: Open, Campaign: "c", Message: "m", Recipient: "r", Time: time.Unix(1764583200, 123).UTC()},
		{Kind: Click, Campaign: "spring", Message: "spring:7", Recipient: "7", Link: 3, URL: "https://shop.test/x?y=1", Time: time.Unix(1, 0).UTC(),
			IP: "2001:db8::1", UserAgent: "Mozilla/5.0", Machine: true, MachineReason: "scanner_agent", Proxy: "gmail", Provider: "google", Stream: "marketing"},
		{},
	} {
		got, err := decodeRecord(appendRecord(nil, &e))
		if err != nil || got != e && !(e.Time.IsZero() && got.Time.Equal(time.Unix(0, e.Time.UnixNano()))) {
			t.Errorf("round trip %+v: %+v %v", e, got, err)
		}
	}
	old, _ := decodeRecord([]byte(`{"Kind":99,"Campaign":"c","Link":2,"Time":"2026-12-01T10:00:00Z","Machine":true}`))
	if old.Kind != Click || old.Campaign != "c" || old.Link != 2 || !old.Machine {
		t.Errorf("JSON record: %+v", old)
	}
}

// FuzzDecodeRecord: no input crashes the record decoder, and whatever it
// accepts in the binary form encodes to a record that reads back the
// same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, &Engagement{Kind: Click, Campaign: "c", URL: "https://x.test/", Time: time.Unix(5, 0)}))
	f.Add([]byte(`{"Kind":111}`))
	f.Add([]byte{recordV1, 'o', 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeRecord(b)
		if err != nil || len(b) == 0 || b[0] != recordV1 {
			return
		}
		again, err := decodeRecord(appendRecord(nil, &e))
		if err != nil || again != e {
			t.Fatalf("re-encoded %+v read back as %+v (%v)", e, again, err)
		}
	})
}

// TestLogGathersGroups: engagements arriving one at a time (as requests
// bring them, 300 of them about 300 µs apart) are committed in groups of
// many, one per groupWait or so, not one group per engagement; every
// one is counted once flushed.
func TestLogGathersGroups(t *testing.T) {
	l, err := OpenLog(t.TempDir(), LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 300 {
		if !l.TryRecord(Engagement{Kind: Open, Campaign: "g", Message: fmt.Sprint(i), Recipient: fmt.Sprint(i), Time: time.Now(), UserAgent: "Mozilla/5.0 x"}) {
			t.Fatal("buffer full")
		}
		time.Sleep(300 * time.Microsecond)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.CampaignStats("g"); st.Counters[CntUniqueOpens] != 300 {
		t.Fatalf("counted %d of 300", st.Counters[CntUniqueOpens])
	}
	if n := l.groups.Load(); n > 100 {
		t.Fatalf("300 engagements took %d group commits, want them gathered (<= 100)", n)
	}
}
