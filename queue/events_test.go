package queue

import (
	"encoding/json"
	"testing"
)

// TestEventsScanSkipsOtherTypes: a type filter returns exactly the
// matching events, the scan position is the last event examined (so a
// reader moving its cursor there sees each event once), and paging by
// that position ends.
func TestEventsScanSkipsOtherTypes(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{Now: newClock().Now})
	ctx := ctxT(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, mustEnqueue(t, q, "a@x.test", []string{"r1@y.test", "r2@z.test"}, "Subject: x\r\n\r\nbody"))
		if i%2 == 0 {
			b := mustNext(t, q)
			if err := q.Complete(ctx, b, results(b, Deferred, 451, `try "later" \ please`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := q.AppendEvents(ctx, []Event{{Type: "complained", Recipient: "r1@y.test", Reply: "é\"\\"}}); err != nil {
		t.Fatal(err)
	}
	all, err := q.Events(ctx, EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, ev := range all {
		want[ev.Type]++
	}
	if want["received"] != 10 || want["deferred"] != 3 || want["complained"] != 1 {
		t.Fatalf("events by type = %v", want)
	}
	last := all[len(all)-1].Seq
	for _, tc := range []struct {
		name string
		f    EventFilter
		n    int
	}{
		{"type", EventFilter{Type: "deferred"}, 3},
		{"types", EventFilter{Types: []string{"deferred", "complained"}}, 4},
		{"none", EventFilter{Type: "bounced"}, 0},
		{"type and types", EventFilter{Type: "received", Types: []string{"deferred"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []Event
			f := tc.f
			f.Limit = 2
			for pages := 0; ; pages++ {
				evs, scanned, err := q.EventsScan(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if pages > 20 {
					t.Fatal("paging by the scan position does not end")
				}
				got = append(got, evs...)
				if scanned == "" {
					break
				}
				if len(evs) > 0 && len(evs) == f.Limit && scanned != evs[len(evs)-1].Seq {
					t.Fatalf("full page scanned to %s, past its last event %s", scanned, evs[len(evs)-1].Seq)
				}
				f.After = scanned
			}
			if len(got) != tc.n {
				t.Fatalf("got %d events, want %d", len(got), tc.n)
			}
			for _, ev := range got {
				if !tc.f.wantType(ev.Type) {
					t.Fatalf("got a %s event", ev.Type)
				}
			}
			if f.After != last {
				t.Fatalf("scan ended at %s, want the last event %s", f.After, last)
			}
		})
	}
}

// FuzzPeekEventType: the type read without decoding is the decoded type
// whenever the peek claims to know it.
func FuzzPeekEventType(f *testing.F) {
	for _, ev := range []Event{{Seq: seqString(1), Type: "received"}, {Seq: seqString(1<<62 + 7), Type: `we"ird\`},
		{Seq: seqString(2), Type: ""}, {Seq: "short", Type: "delivered"}} {
		f.Add(mustJSON(&ev))
	}
	f.Add([]byte(`{"seq":"0000000000000001","type":"a\"b"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		typ, ok := peekEventType(v)
		if !ok {
			return
		}
		var ev Event
		if err := json.Unmarshal(v, &ev); err != nil {
			return // the caller's decode reports it
		}
		if ev.Type != typ {
			t.Fatalf("peek says %q, decode %q in %q", typ, ev.Type, v)
		}
	})
}
