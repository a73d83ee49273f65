package queue

import (
	"bytes"
	"math"
	"sort"
	"testing"
	"time"
)

func TestSchedKeyRoundTripAndOrder(t *testing.T) {
	id := newID(time.Unix(100, 0))
	tests := []schedEntry{
		{due: 0, domain: "x.test", id: id, idx: 0},
		{due: -5, domain: "", id: id, idx: 7},
		{due: math.MaxInt64, domain: "weird\x00dom@ain", id: id, idx: math.MaxUint32},
		{due: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), domain: "Ünï.test", id: id, idx: 3},
	}
	var keys [][]byte
	for _, e := range tests {
		k := schedKey(e.due, e.domain, e.id, e.idx)
		got, err := parseSchedKey(k)
		if err != nil || got != e {
			t.Fatalf("round trip %+v: got %+v, %v", e, got, err)
		}
		if bytes.Compare(k, schedBound(e.due)) < 0 || bytes.Compare(k, schedBound(e.due+1)) >= 0 && e.due != math.MaxInt64 {
			t.Fatalf("key for due %d outside its bounds", e.due)
		}
		keys = append(keys, k)
	}
	// Keys sort by due time, negative times first.
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	var last int64 = math.MinInt64
	for _, k := range keys {
		e, _ := parseSchedKey(k)
		if e.due < last {
			t.Fatalf("schedule keys out of due order")
		}
		last = e.due
	}
	for _, bad := range [][]byte{nil, []byte("s"), []byte("r12345678"), append(schedKey(1, "d", id, 1)[:20], 1)} {
		if _, err := parseSchedKey(bad); err == nil {
			t.Fatalf("parsed malformed key %q", bad)
		}
	}
}

func TestIDs(t *testing.T) {
	t0 := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	a, b := newID(t0), newID(t0)
	if a == b || !validID(a) || len(a) != idLen {
		t.Fatalf("ids %q %q", a, b)
	}
	if got, ok := idTime(a); !ok || !got.Equal(t0) {
		t.Fatalf("idTime %v %v", got, ok)
	}
	later := newID(t0.Add(time.Nanosecond))
	if idFloor(t0) > a || a >= later {
		t.Fatalf("ids not time-ordered: floor %s a %s later %s", idFloor(t0), a, later)
	}
	if later < idFloor(t0.Add(time.Nanosecond)) || a >= idFloor(t0.Add(time.Nanosecond)) {
		t.Fatalf("idFloor does not bound ids")
	}
	for _, bad := range []string{"", "short", a[:25] + "w", a[:25] + "A", a + "0"} {
		if validID(bad) {
			t.Fatalf("validID(%q)", bad)
		}
	}
	for _, s := range []string{"0000000000000000", "00000000000000ff", "ffffffffffffffff"} {
		n, err := parseSeq(s)
		if err != nil || seqString(n) != s {
			t.Fatalf("seq %q: %d %v", s, n, err)
		}
	}
	for _, bad := range []string{"", "123", "zzzzzzzzzzzzzzzz", "+000000000000001"} {
		if _, err := parseSeq(bad); err == nil {
			t.Fatalf("parseSeq(%q) accepted", bad)
		}
	}
}
