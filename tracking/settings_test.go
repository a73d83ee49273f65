package tracking

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/audience"
	"github.com/petrel-mta/petrel/ingest"
	"github.com/petrel-mta/petrel/internal/testnet"
)

func b(v bool) *bool { return &v }

// TestSettingsResolve: on both backends, a key's switch wins over its
// sending domain's, which wins over the defaults (opens and clicks on,
// unsubscribe by stream); unknown keys and bad domains are refused; the
// switches survive reopening the store; clearing a row inherits again.
func TestSettingsResolve(t *testing.T) {
	for _, backend := range testnet.ESPBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			st, err := audience.Open(ctx, testnet.ESPDSN(t, backend), audience.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s, err := NewSettings(ctx, st.DB(), st.Postgres())
			if err != nil {
				t.Fatal(err)
			}
			s.KnownKey = func(_ context.Context, name string) bool { return name == "k1" || name == "k2" }
			for _, set := range []struct {
				scope, name string
				sw          Switches
			}{
				{ScopeDomain, "Shop.TEST", Switches{Clicks: b(false), Unsubscribe: b(true)}},
				{ScopeKey, "k1", Switches{Opens: b(false)}},
				{ScopeKey, "k2", Switches{Clicks: b(true), Unsubscribe: b(false)}},
				{ScopeDomain, "BÜCHER.test", Switches{Opens: b(false)}}, // stored as xn--bcher-kva.test
			} {
				if _, err := s.Set(ctx, set.scope, set.name, set.sw); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Set(ctx, ScopeKey, "nobody", Switches{Opens: b(false)}); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("unknown key: %v", err)
			}
			if _, err := s.Set(ctx, ScopeDomain, "not a domain", Switches{Opens: b(false)}); !errors.Is(err, ErrInvalidDomain) {
				t.Fatalf("bad domain: %v", err)
			}
			if _, err := s.Set(ctx, "user", "x", Switches{}); !errors.Is(err, ErrInvalidScope) {
				t.Fatalf("bad scope: %v", err)
			}
			s2, err := NewSettings(ctx, st.DB(), st.Postgres()) // reopened: read from the table
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				key, domain   string
				opens, clicks bool
				unsub         *bool
			}{
				{"", "other.test", true, true, nil},
				{"", "shop.test", true, false, b(true)},
				{"k1", "shop.test", false, false, b(true)},
				{"k2", "shop.test", true, true, b(false)},
				{"k1", "other.test", false, true, nil},
				{"k3", "shop.test", true, false, b(true)},
				{"", "bücher.test", false, true, nil},
			} {
				got := s2.For(tt.key, tt.domain)
				if got.Opens != tt.opens || got.Clicks != tt.clicks || (got.Unsubscribe == nil) != (tt.unsub == nil) ||
					got.Unsubscribe != nil && *got.Unsubscribe != *tt.unsub {
					t.Errorf("For(%q, %q) = %+v, want opens %v clicks %v unsubscribe %v", tt.key, tt.domain, got, tt.opens, tt.clicks, tt.unsub)
				}
			}
			if _, err := s2.Set(ctx, ScopeKey, "k1", Switches{}); err != nil {
				t.Fatal(err)
			}
			if got := s2.For("k1", "other.test"); !got.Opens || len(s2.List()) != 3 {
				t.Fatalf("after clearing k1: %+v, %d rows", got, len(s2.List()))
			}
		})
	}
}

// TestAPITrackerRewrites: the API tracker rewrites a message's HTML and
// text per the resolved switches and the request's opt-out, leaves raw
// messages and messages without a public base alone, and seals the
// Message-ID and provider in its tokens (no recipient address).
func TestAPITrackerRewrites(t *testing.T) {
	st, err := audience.Open(context.Background(), testnet.ESPDSN(t, "sqlite"), audience.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := NewSettings(context.Background(), st.DB(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(context.Background(), ScopeKey, "quiet", Switches{Opens: b(false), Clicks: b(false)}); err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	const html = `<p><a href="https://shop.test/a">a</a></p>`
	const text = "see https://shop.test/a"
	for _, tt := range []struct {
		name, key, base string
		raw             bool
		opt             ingest.TrackingOptOut
		pixel, clicks   bool
	}{
		{"defaults", "k", "https://t.shop.test", false, ingest.TrackingOptOut{}, true, true},
		{"quiet key", "quiet", "https://t.shop.test", false, ingest.TrackingOptOut{}, false, false},
		{"opt out of clicks", "k", "https://t.shop.test", false, ingest.TrackingOptOut{Clicks: b(false)}, true, false},
		{"opt-in cannot override the key", "quiet", "https://t.shop.test", false, ingest.TrackingOptOut{Opens: b(true)}, false, false},
		{"no public base", "k", "", false, ingest.TrackingOptOut{}, false, false},
		{"raw", "k", "https://t.shop.test", true, ingest.TrackingOptOut{}, false, false},
		{"campaign name longer than a token holds", "k", "https://t.shop.test", false, ingest.TrackingOptOut{}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &APITracker{Settings: s, Sign: signer.Encode, BaseURL: func(context.Context, string) string { return tt.base }}
			m := &ingest.TrackedMessage{Key: tt.key, From: "a@shop.test", Rcpts: []string{"bo@gmail.com"}, Stream: "transactional",
				Campaign: "receipt", MessageID: "1.abc@petrel.test", Raw: tt.raw, OptOut: tt.opt}
			if strings.HasPrefix(tt.name, "campaign name") {
				m.Campaign = "receipt" + strings.Repeat("x", 300)
			}
			if !tt.raw {
				m.HTML, m.Text = html, text
			}
			if err := tr.TrackMessage(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(m.HTML, "/t/o/"); got != tt.pixel {
				t.Errorf("pixel %v, want %v: %s", got, tt.pixel, m.HTML)
			}
			if got := strings.Contains(m.HTML, "/t/c/") && strings.Contains(m.Text, "/t/c/"); got != tt.clicks {
				t.Errorf("clicks %v, want %v: %s | %s", got, tt.clicks, m.HTML, m.Text)
			}
			if !tt.clicks && !tt.raw && (!strings.Contains(m.HTML, `href="https://shop.test/a"`) || m.Text != text) {
				t.Errorf("untracked links changed: %s | %s", m.HTML, m.Text)
			}
			if i := strings.Index(m.HTML, "/t/c/"); i >= 0 {
				tok, err := signer.Decode(m.HTML[i+5 : i+5+strings.IndexByte(m.HTML[i+5:], '"')])
				if err != nil || tok.Message != "1.abc@petrel.test" || !strings.HasPrefix(tok.Campaign, "receipt") || tok.Provider != "google" ||
					tok.Recipient != "" || tok.URL != "https://shop.test/a" {
					t.Errorf("click token %+v %v", tok, err)
				}
			}
		})
	}
}
