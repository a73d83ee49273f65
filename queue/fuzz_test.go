package queue

import (
	"context"
	"testing"
	"time"
)

// FuzzAdminInputs feeds untrusted admin/API inputs (message IDs from URL
// paths, list and event cursors from query strings) to a live queue: they
// must give errors, never panics.
func FuzzAdminInputs(f *testing.F) {
	q, err := Open(f.TempDir(), Options{ScanInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	id, err := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"a@x.test", "b@y.test"}}, []byte("b"))
	if err != nil {
		f.Fatal(err)
	}
	evs, _ := q.Events(ctx, EventFilter{})
	f.Add(id, id+".0", evs[0].Seq)
	f.Add("", "", "")
	f.Add("00000000000000000000000000", "00000000000000000000000000.4294967295", "ffffffffffffffff")
	f.Add("../../etc/passwd", "x.y.z", "-1")
	f.Add("vvvvvvvvvvvvvvvvvvvvvvvvvv", id+".99999999999", "0000000000000000")
	f.Fuzz(func(t *testing.T, msgID, cursor, after string) {
		q.Message(msgID)
		q.Body(msgID)
		q.List(ctx, cursor, 3)
		q.Events(ctx, EventFilter{After: after, Recipient: msgID, Limit: 2})
		q.Cursor(cursor)
		if msgID != "" && msgID != id {
			if _, err := q.Hold(ctx, msgID); err == nil {
				q.Release(ctx, msgID)
			}
		}
	})
}

// FuzzCorruptRecords overwrites a stored message's records with arbitrary
// bytes (a damaged or foreign spool) and runs every operation over it:
// each must report an error or skip the record, never panic.
func FuzzCorruptRecords(f *testing.F) {
	f.Add(byte(0), []byte(`{"f":"x","r":["a@x.test"],"sz":1,"cr":1}`))
	f.Add(byte(1), []byte(`{"a":"a@x.test","s":"queued","d":-5}`))
	f.Add(byte(1), []byte(`{"a":"","s":"bogus","n":-3}`))
	f.Add(byte(2), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(byte(3), []byte{0x80})
	f.Add(byte(4), []byte(`{"type":"x","time":"nope"}`))
	f.Add(byte(0), []byte(`{"r":[]}`))
	f.Add(byte(2), []byte{0x09})
	f.Fuzz(runCorrupt)
}

func runCorrupt(t *testing.T, kind byte, val []byte) {
	{
		q, err := Open(t.TempDir(), Options{ScanInterval: time.Millisecond, MaxLifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		id, err := q.Enqueue(ctx, Envelope{From: "s@src.test", Recipients: []string{"a@x.test", "b@x.test"}}, []byte("b"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := q.Next(ctx)
		var key []byte
		switch kind % 5 {
		case 0:
			key = msgKey(pMeta, id)
		case 1:
			key = rcptKey(id, int(kind/5)%3)
		case 2:
			key = msgKey(pLive, id)
		case 3:
			key = counterKey(int(kind/5) % numCounters)
		case 4:
			key = eventKey(uint64(kind))
		}
		if err := q.db.Set(key, val, nil); err != nil {
			t.Fatal(err)
		}
		q.Message(id)
		q.List(ctx, "", 10)
		q.Events(ctx, EventFilter{})
		q.Stats()
		if b != nil {
			q.Complete(ctx, b, []Result{{Index: b.Rcpts[0].Index, Outcome: Deferred, Code: 451}})
		}
		q.Flush(ctx)
		q.Hold(ctx, "")
		q.Release(ctx, "")
		if b2, err := q.Next(ctx); err == nil {
			q.Complete(ctx, b2, results(b2, Bounced, 550, "no"))
		}
		q.Delete(ctx, id)
		q.Close()
		// Reopen over the damaged records.
		if q2, err := Open(q.dir, Options{}); err == nil {
			q2.Stats()
			q2.Close()
		}
	}
}
