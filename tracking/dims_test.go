package tracking

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/queue"
)

// TestStatsByProviderAndType: delivery events in a real queue's event
// log and engagements in the engagement log give per-campaign, per
// provider and per type counts. A delivered event the log holds twice is
// counted once, a complaint (no MX) is counted under the provider its
// delivery was, opens/clicks from tokens carry their provider, machine
// opens stay out of unique opens and rates, a second pass reads nothing
// new, and the counts survive reopening.
func TestStatsByProviderAndType(t *testing.T) {
	ctx := context.Background()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	dir := t.TempDir()
	l, err := OpenLog(dir, LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ev := func(typ, msg, rcpt, mx, stream, campaign string, attempt int) queue.Event {
		return queue.Event{Type: typ, Time: at, MsgID: msg, Recipient: rcpt, RemoteMX: mx, Stream: stream, Campaign: campaign, Attempt: attempt}
	}
	evs := []queue.Event{
		ev("received", "m1", "a@biz.test", "", "marketing", "spring", 0),
		ev("delivered", "m1", "a@biz.test", "aspmx.l.google.com", "marketing", "spring", 1),
		ev("delivered", "m1", "a@biz.test", "aspmx.l.google.com", "marketing", "spring", 1), // redelivered after a crash
		ev("delivered", "m2", "b@gmail.com", "gmail-smtp-in.l.google.com", "marketing", "spring", 1),
		ev("deferred", "m3", "c@qq.com", "mx3.qq.com", "marketing", "spring", 1),
		ev("deferred", "m3", "c@qq.com", "mx3.qq.com", "marketing", "spring", 2),
		ev("delivered", "m3", "c@qq.com", "mx3.qq.com", "marketing", "spring", 3),
		ev("bounced", "m4", "d@163.com", "163mx01.mxmail.netease.com", "marketing", "spring", 1),
		ev("complained", "m1", "a@biz.test", "", "marketing", "spring", 0),
		ev("delivered", "r1", "e@outlook.com", "outlook-com.olc.protection.outlook.com", "transactional", "receipt", 1),
		ev("opened", "m1", "a@biz.test", "", "", "spring", 0), // the engagement forwarder's: not a delivery
	}
	if err := q.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if n, err := l.ApplyDeliveryEvents(ctx, q); err != nil || n != len(evs)-2 { // received and opened are not decoded
		t.Fatalf("apply: %d %v", n, err)
	}
	if n, err := l.ApplyDeliveryEvents(ctx, q); err != nil || n != 0 {
		t.Fatalf("second pass: %d %v", n, err)
	}
	rec := func(e Engagement) {
		e.Campaign, e.Time, e.Stream = "spring", at.Add(time.Hour), "marketing"
		l.Record(ctx, e)
	}
	rec(Engagement{Kind: Open, Message: "m1", Recipient: "c1", Provider: "google", Machine: true, MachineReason: "apple_mpp"})
	rec(Engagement{Kind: Open, Message: "m1", Recipient: "c1", Provider: "google"})
	rec(Engagement{Kind: Open, Message: "m1", Recipient: "c1", Provider: "google"})
	rec(Engagement{Kind: Open, Message: "m2", Recipient: "c2", Provider: "google", Proxy: "gmail"})
	rec(Engagement{Kind: Click, Message: "m2", Recipient: "c2", Provider: "google"})
	rec(Engagement{Kind: Open, Message: "m3", Recipient: "c3", Provider: "qq", Machine: true, MachineReason: "scanner_agent"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = OpenLog(dir, LogOptions{}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tot, err := l.Totals("spring")
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Delivered: 3, Bounced: 1, Complained: 1, Deferred: 2, Opens: 3, UniqueOpens: 2, MachineOpens: 2, ProxyOpens: 1,
		Clicks: 1, UniqueClicks: 1, OpenRate: 2.0 / 3, ClickRate: 1.0 / 3, ClickToOpenRate: 0.5, BounceRate: 0.25, ComplaintRate: 1.0 / 3}
	if tot != want {
		t.Fatalf("spring totals\n got %+v\nwant %+v", tot, want)
	}
	by, err := l.CampaignBy("spring", DimProvider)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Counts{}
	for _, s := range by {
		got[s.Value] = s.Counts
	}
	if g := got["google"]; g.Delivered != 2 || g.Complained != 1 || g.UniqueOpens != 2 || g.Opens != 3 || g.MachineOpens != 1 || g.UniqueClicks != 1 || g.ComplaintRate != 0.5 {
		t.Fatalf("google: %+v", g)
	}
	if g := got["qq"]; g.Delivered != 1 || g.Deferred != 2 || g.UniqueOpens != 0 || g.MachineOpens != 1 || g.OpenRate != 0 {
		t.Fatalf("qq: %+v", g)
	}
	if g := got["163"]; g.Bounced != 1 || g.Delivered != 0 || g.BounceRate != 1 {
		t.Fatalf("163: %+v", g)
	}
	if len(got) != 3 {
		t.Fatalf("providers of spring: %v", by)
	}
	types, err := l.TotalsBy(DimType)
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != 2 || types[0].Value != "marketing" || types[0].Delivered != 3 || types[0].UniqueOpens != 2 ||
		types[1].Value != "transactional" || types[1].Delivered != 1 {
		t.Fatalf("types: %+v", types)
	}
	provs, err := l.TotalsBy(DimProvider)
	if err != nil {
		t.Fatal(err)
	}
	var outlook bool
	for _, s := range provs {
		outlook = outlook || s.Value == "outlook" && s.Delivered == 1
	}
	if !outlook || len(provs) != 4 {
		t.Fatalf("providers: %+v", provs)
	}
}
