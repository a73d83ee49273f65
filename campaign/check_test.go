package campaign

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

func item(res CheckResult, name string) CheckItem {
	for _, it := range res.Items {
		if it.Name == name {
			return it
		}
	}
	return CheckItem{}
}

// domainsReady is a sending-domain registry for the check: the domains
// in ok are ready, any other is not (with the record policy would name).
type domainsReady struct {
	mu sync.Mutex
	ok map[string]bool
}

func (d *domainsReady) ready(domain string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ok[domain] {
		return nil
	}
	return fmt.Errorf("sender domain %s is unverified: DKIM record s1._domainkey.%s missing", domain, domain)
}

func (d *domainsReady) set(domain string, ok bool) { d.mu.Lock(); d.ok[domain] = ok; d.mu.Unlock() }

// TestPreSendCheck runs the check against a real rspamd: a clean
// campaign passes with its score and symbols; GTUBE content scores above
// the threshold and blocks Send (nothing queued, the result stored with
// the symbols); a relative link, an unready sending domain and an
// unknown field fail their items; the filter down blocks unless the
// operator made it optional; a domain that drops mid-send pauses the
// send with the reason.
func TestPreSendCheck(t *testing.T) {
	rspamd := testnet.Rspamd(t)
	eachBackend(t, 30, func(t *testing.T, e *svcEnv) {
		reg := &domainsReady{ok: map[string]bool{"shop.test": true}}
		opts := Options{Templates: e.tpls, Check: CheckOptions{SenderDomain: reg.ready, Filter: &Rspamd{URL: rspamd}, Threshold: 6, Hostname: "petrel.test"}}
		e.svc.SetOptions(opts)
		if err := e.svc.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		sp := e.spec("clean")
		sp.HTML = `<p>Dear %name%, the harbour market opens on Saturday with fresh fish from %city%.</p><p><a href="https://shop.test/market">See the stalls</a></p>`
		sp.Text = ""
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.Check(e.ctx, "clean")
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.Spam == nil || res.Spam.Filter != "rspamd" || len(res.Spam.Symbols) == 0 || res.Spam.Score > 6 || item(res, "links").Status != CheckPass {
			t.Fatalf("clean campaign: %+v", res)
		}
		if c := e.status("clean"); c.Check == nil || c.Check.Spam == nil || c.Check.Spam.Score != res.Spam.Score {
			t.Fatalf("check not stored: %+v", c.Check)
		}

		sp = e.spec("spam")
		sp.Text = "Dear %name%,\n" + gtube + "\n"
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Send(e.ctx, "spam")
		var ce *CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("send of GTUBE: %v", err)
		}
		cf := item(ce.Result, "content_filter")
		if cf.Status != CheckFail || !strings.Contains(cf.Detail, "GTUBE") || ce.Result.Spam.Score <= 6 {
			t.Fatalf("content filter item %+v, spam %+v", cf, ce.Result.Spam)
		}
		if c := e.status("spam"); c.Status != StatusDraft || c.Check == nil || c.Check.OK {
			t.Fatalf("blocked campaign %+v", c)
		}
		if n := len(e.queued(t)); n != 0 {
			t.Fatalf("%d messages queued by a blocked send", n)
		}

		sp = e.spec("links")
		sp.From = "news@other.test"
		sp.HTML, sp.Text = `<p>Hi %name%, <a href="/sale">sale</a> <a href="javascript:alert(1)">x</a> <a href="https://shop.test/ok">ok</a></p>`, ""
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		res, err = e.svc.Check(e.ctx, "links")
		if err != nil {
			t.Fatal(err)
		}
		if l := item(res, "links"); res.OK || l.Status != CheckFail || !strings.Contains(l.Detail, `"/sale" is relative`) || !strings.Contains(l.Detail, "javascript:") {
			t.Fatalf("links: %+v", res)
		}
		if d := item(res, "sending_domain"); d.Status != CheckFail || !strings.Contains(d.Detail, "s1._domainkey.other.test") {
			t.Fatalf("sending domain: %+v", d)
		}

		// The filter down: blocked, unless optional.
		down := opts
		down.Check.Filter = &Rspamd{URL: "http://127.0.0.1:9"}
		e.svc.SetOptions(down)
		res, _ = e.svc.Check(e.ctx, "clean")
		if f := item(res, "content_filter"); res.OK || f.Status != CheckFail || !strings.Contains(f.Detail, "unreachable") {
			t.Fatalf("filter down: %+v", res)
		}
		down.Check.FilterOptional = true
		e.svc.SetOptions(down)
		res, _ = e.svc.Check(e.ctx, "clean")
		if f := item(res, "content_filter"); !res.OK || f.Status != CheckWarn {
			t.Fatalf("filter down, optional: %+v", res)
		}

		// An A/B variant is checked like the campaign.
		e.svc.SetOptions(opts)
		sp = e.spec("abspam")
		sp.AB = &ABTest{Percent: 10, Variants: []Variant{{Name: "a", Subject: "Our market"}, {Name: "b", Text: gtube + "\n"}}}
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		res, err = e.svc.Check(e.ctx, "abspam")
		if err != nil {
			t.Fatal(err)
		}
		if b := item(res, "b/content_filter"); res.OK || b.Status != CheckFail || !strings.Contains(b.Detail, "GTUBE") || item(res, "a/content_filter").Status != CheckPass {
			t.Fatalf("A/B check: %+v", res)
		}

		// The domain drops to unverified mid-send: the send pauses with
		// the reason; fixed, it resumes and finishes, each contact once.
		e.svc.SetOptions(opts)
		sp = e.spec("drop")
		sp.PageSize, sp.Rate = 5, 100
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Send(e.ctx, "drop"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "part of the send", func() bool { return e.status("drop").Progress.Sent >= 5 })
		reg.set("shop.test", false)
		waitUntil(t, "paused by the guard", func() bool { return e.status("drop").Status == StatusPaused })
		if c := e.status("drop"); !strings.Contains(c.Error, "s1._domainkey.shop.test missing") || c.Progress.Sent >= 30 {
			t.Fatalf("paused: %+v", c)
		}
		if _, err := e.svc.Resume(e.ctx, "drop"); !errors.As(err, new(*CheckError)) {
			t.Fatalf("resume with the domain still unverified: %v", err)
		}
		reg.set("shop.test", true)
		if _, err := e.svc.Resume(e.ctx, "drop"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "sent", func() bool { return e.status("drop").Status == StatusSent })
		for addr, b := range e.queued(t) {
			if len(b) != 1 {
				t.Errorf("%s: %d messages", addr, len(b))
			}
		}

		// A scheduled campaign whose check fails when due is paused.
		sp = e.spec("later")
		sp.Text = gtube + "\n"
		sp.Schedule = &Schedule{SendAt: time.Now().Add(time.Second).UTC().Format(time.RFC3339)}
		if _, err := e.svc.Create(e.ctx, sp); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the due campaign paused", func() bool { return e.status("later").Status == StatusPaused })
		if c := e.status("later"); !strings.Contains(c.Error, "content_filter") || c.StartedAt != nil {
			t.Fatalf("due campaign: %+v", c)
		}
	})
}

// TestParseRspamdReply: scores and symbols (highest first), and bad
// replies refused.
func TestParseRspamdReply(t *testing.T) {
	res, err := ParseRspamdReply([]byte(`{"score":7.5,"action":"add header","symbols":{"A":{"name":"A","score":1},"B":{"name":"B","score":5.5,"description":"bad","options":["x"]}}}`))
	if err != nil || res.Score != 7.5 || res.Action != "add header" || len(res.Symbols) != 2 || res.Symbols[0].Name != "B" || res.Symbols[0].Options[0] != "x" {
		t.Fatalf("%+v %v", res, err)
	}
	for _, bad := range []string{``, `{`, `{"action":"reject"}`, `{"error":"no body"}`, `[]`} {
		if _, err := ParseRspamdReply([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseRspamdReply: any reply is parsed or refused, never a crash.
func FuzzParseRspamdReply(f *testing.F) {
	f.Add([]byte(`{"score":2.4,"required_score":15.0,"action":"no action","symbols":{"MIME_GOOD":{"name":"MIME_GOOD","score":-0.1,"options":["text/plain"]}}}`))
	f.Add([]byte(`{"is_skipped":true,"score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ParseRspamdReply(b)
		if err == nil && len(res.Symbols) > 1 && res.Symbols[0].Score < res.Symbols[len(res.Symbols)-1].Score {
			t.Fatalf("symbols not ordered: %+v", res.Symbols)
		}
	})
}
