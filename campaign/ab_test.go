package campaign

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// TestABTest: variants a and b on 10% each, the winner by unique human
// opens from a real engagement log after the wait, the rest gets the
// winner — with the service restarted during the wait (the test phase's
// end is durable) — and every contact receives exactly one message, of
// its group's variant.
func TestABTest(t *testing.T) {
	eachBackend(t, 300, func(t *testing.T, e *svcEnv) {
		eng, err := tracking.OpenLog(filepath.Join(t.TempDir(), "engagement"), tracking.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		e.opts.Engagement = func(campaign string) (int64, int64, error) {
			if err := eng.Flush(); err != nil {
				return 0, 0, err
			}
			r, err := eng.Report(campaign)
			return r.UniqueOpens, r.UniqueClicks, err
		}
		e.svc.SetOptions(e.opts)
		if err := e.svc.Start(e.svcCtx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("ab")
		sp.AB = &ABTest{Percent: 10, Metric: "opens", Wait: "2s", Variants: []Variant{
			{Name: "a", Subject: "A: hello %first_name%"},
			{Name: "b", Subject: "B: news for %first_name%", Text: "B body for %name%.\n"},
		}}
		for _, bad := range []*ABTest{
			{Percent: 10, Variants: sp.AB.Variants[:1]},
			{Percent: 60, Variants: sp.AB.Variants},
			{Percent: 10, Metric: "likes", Variants: sp.AB.Variants},
			{Percent: 10, Wait: "soon", Variants: sp.AB.Variants},
			{Percent: 10, Variants: []Variant{{Name: "a"}, {Name: "a"}}},
		} {
			bsp := sp
			bsp.ID, bsp.AB = "bad", bad
			if _, err := e.svc.Create(e.ctx, bsp); err == nil {
				t.Errorf("A/B %+v accepted", bad)
			}
		}
		bsp := sp
		bsp.ID = "badfield"
		bsp.AB = &ABTest{Percent: 10, Variants: []Variant{{Name: "a"}, {Name: "b", Subject: "%nickname%"}}}
		if _, err := e.svc.Create(e.ctx, bsp); err == nil || !strings.Contains(err.Error(), "variant b") {
			t.Errorf("variant with an unknown field: %v", err)
		}
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Send(e.ctx, "ab"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the test phase done", func() bool { c := e.status("ab"); return c.AB != nil && c.AB.Test.Done })
		// Readers of variant b open their messages (human opens).
		opened := 0
		for addr, bodies := range e.queued(t) {
			if strings.Contains(bodies[0], "Subject: B: ") {
				eng.Record(e.ctx, tracking.Engagement{Kind: tracking.Open, Campaign: VariantTag("ab", "b"), Message: addr, Recipient: addr, Time: time.Now()})
				opened++
			}
		}
		if opened == 0 {
			t.Fatal("no variant b message in the test phase")
		}
		e.restart(t)
		waitUntil(t, "sent", func() bool { return e.status("ab").Status == StatusSent })
		c := e.status("ab")
		if c.AB.Winner != "b" || c.AB.Scores["b"] != int64(opened) || c.AB.Scores["a"] != 0 || c.Progress.Sent != 300 {
			t.Fatalf("A/B state %+v, progress %+v (b opened %d)", c.AB, c.Progress, opened)
		}
		got := e.queued(t)
		if len(got) != 300 {
			t.Fatalf("%d recipients, want 300", len(got))
		}
		groups := map[string]int{}
		for i := 0; i < 300; i++ {
			addr := fmt.Sprintf("c%d@example.test", i)
			b := got[addr]
			if len(b) != 1 {
				t.Fatalf("%s: %d messages", addr, len(b))
			}
			want := "B: "
			group := "rest"
			switch bucket("ab", int64(i+1)) / 10 { // contact ids are 1..300 in insertion order
			case 0:
				want, group = "A: ", "a"
			case 1:
				group = "b"
			}
			groups[group]++
			if !strings.Contains(b[0], "Subject: "+want) {
				t.Errorf("%s (%s) got %q", addr, group, b[0][:200])
			}
			if group != "rest" && !strings.Contains(b[0], "X-Petrel-Campaign: ab."+group) {
				t.Errorf("%s: not tagged with its variant", addr)
			}
		}
		if groups["a"] == 0 || groups["b"] == 0 || groups["rest"] < 200 || int64(groups["a"]+groups["b"]) != c.AB.Test.Sent {
			t.Fatalf("groups %v, test phase %+v", groups, c.AB.Test)
		}
	})
}
