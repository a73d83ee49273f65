package campaign

import (
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingRewritesLinks: a tracked send's message has every http(s)
// link through a click token that decodes to the original target, the
// campaign, the message's idempotency key and the contact id, an open
// pixel in its HTML part, and the unsubscribe link left untouched; with
// tracking off nothing changes.
func TestTrackingRewritesLinks(t *testing.T) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := Compile(Content{Subject: "Hi %name%", HTML: `<p>Hi %name%, <a href="https://shop.test/sale">sale</a> <a href="%unsubscribe_url%">unsubscribe</a></p>`,
		Text: "Sale: https://shop.test/sale\nUnsubscribe: %unsubscribe_url%\n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	unsub := "https://mail.shop.test/unsubscribe/tok"
	r := Recipient{ID: 42, Email: "ann@gmail.com", Name: "Ann", Values: Map{"name": "Ann"}}
	now := time.Unix(1_800_000_000, 0)
	for _, tt := range []struct {
		name          string
		opens, clicks bool
		wantClicks    int
		wantPixel     bool
	}{
		{"both", true, true, 2, true},
		{"clicks only", false, true, 2, false},
		{"opens only", true, false, 0, true},
		{"off", false, false, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := Send{ID: "winter", Template: tpl, From: &mail.Address{Address: "news@shop.test"}, Stream: "marketing",
				Unsubscribe: func(string, string) string { return unsub },
				Tracking: &Tracking{Sign: signer.Encode, BaseURL: func(d string) string {
					if d != "shop.test" {
						t.Errorf("BaseURL asked for %q", d)
					}
					return "https://track.shop.test/"
				}, Opens: tt.opens, Clicks: tt.clicks}}
			rendered, u := s.render(r, "marketing")
			if err := s.Tracking.apply(&rendered, s.tag(), IdempotencyKey(s.ID, r.ID), r, "marketing", s.From.Address, u, now); err != nil {
				t.Fatal(err)
			}
			all := rendered.HTML + "\n" + rendered.Text
			clicks := regexp.MustCompile(`https://track\.shop\.test/t/c/([A-Za-z0-9_-]+)`).FindAllStringSubmatch(all, -1)
			if len(clicks) != tt.wantClicks {
				t.Fatalf("%d click links, want %d:\n%s", len(clicks), tt.wantClicks, all)
			}
			for _, m := range clicks {
				tok, err := signer.Decode(m[1])
				if err != nil {
					t.Fatal(err)
				}
				if tok.Kind != tracking.Click || tok.URL != "https://shop.test/sale" || tok.Campaign != "winter" ||
					tok.Message != IdempotencyKey("winter", 42) || tok.Recipient != "42" || tok.Sent != now.Unix() || tok.Stream != "marketing" || tok.Provider != "google" {
					t.Fatalf("click token %+v", tok)
				}
			}
			if strings.Count(all, unsub) != 2 {
				t.Fatalf("unsubscribe link rewritten or lost:\n%s", all)
			}
			if strings.Contains(rendered.HTML, "/t/o/") != tt.wantPixel {
				t.Fatalf("pixel present = %v, want %v:\n%s", !tt.wantPixel, tt.wantPixel, rendered.HTML)
			}
			if !tt.opens && !tt.clicks && !strings.Contains(rendered.HTML, `<a href="https://shop.test/sale">`) {
				t.Fatalf("untracked send changed:\n%s", rendered.HTML)
			}
		})
	}
}

// TestTrackingWithoutBaseOrWithHugeLink: no public base means no
// tracking at all (a link to a private listener would break the mail),
// and a link too long for a token stays as it is while the others are
// tracked.
func TestTrackingWithoutBaseOrWithHugeLink(t *testing.T) {
	signer, err := tracking.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	huge := "https://shop.test/" + strings.Repeat("x", 5000)
	r := Recipient{ID: 7, Email: "bo@example.test"}
	for _, tt := range []struct {
		name, base string
		wantClicks int
		wantPixel  bool
	}{
		{"no base", "", 0, false},
		{"base", "https://t.shop.test", 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := (&Tracking{Sign: signer.Encode, BaseURL: func(string) string { return tt.base }, Opens: true, Clicks: true}).forSend("news@shop.test", "", nil, nil)
			rendered := Rendered{HTML: `<a href="https://shop.test/a">a</a><a href="` + huge + `">b</a>`}
			if err := tr.apply(&rendered, "c", "k", r, "marketing", "news@shop.test", "", time.Now()); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(rendered.HTML, "/t/c/"); n != tt.wantClicks {
				t.Fatalf("%d tracked links, want %d: %.300s", n, tt.wantClicks, rendered.HTML)
			}
			if !strings.Contains(rendered.HTML, huge) {
				t.Fatal("the over-long link was changed or lost")
			}
			if strings.Contains(rendered.HTML, "/t/o/") != tt.wantPixel {
				t.Fatalf("pixel: %.300s", rendered.HTML)
			}
		})
	}
}
