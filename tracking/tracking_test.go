package tracking

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var testSecret = bytes.Repeat([]byte("k"), 32)

func newSigner(t testing.TB, secret []byte) *Signer {
	t.Helper()
	s, err := NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenRoundTripAndTamper(t *testing.T) {
	s := newSigner(t, testSecret)
	want := Token{Kind: Click, Campaign: "camp7", Message: "camp7:k42", Recipient: "contact-42", Link: 3, URL: "https://shop.test/p?a=1&b=2", Sent: 1764580000,
		Provider: "google", Stream: "marketing"}
	enc, err := s.Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Decode(enc)
	if err != nil || got != want {
		t.Fatalf("Decode = %+v, %v; want %+v", got, err, want)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(enc)
	// Every single-bit change anywhere, every truncation and an extension
	// must fail.
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			m := bytes.Clone(raw)
			m[i] ^= 1 << bit
			if _, err := s.Decode(base64.RawURLEncoding.EncodeToString(m)); !errors.Is(err, ErrBadToken) {
				t.Fatalf("byte %d bit %d flipped: %v", i, bit, err)
			}
		}
	}
	for n := 0; n < len(raw); n++ {
		if _, err := s.Decode(base64.RawURLEncoding.EncodeToString(raw[:n])); !errors.Is(err, ErrBadToken) {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	if _, err := s.Decode(enc + "AA"); !errors.Is(err, ErrBadToken) {
		t.Fatal("extended token accepted")
	}
	other := newSigner(t, bytes.Repeat([]byte("x"), 32))
	forged, _ := other.Encode(Token{Kind: Click, Message: "m", Recipient: "r", URL: "https://evil.test/"})
	if _, err := s.Decode(forged); !errors.Is(err, ErrBadToken) {
		t.Fatal("token signed with another key accepted")
	}
	for _, bad := range []Token{
		{Kind: Click, URL: "javascript:alert(1)"},
		{Kind: Click, URL: "//evil.test/"},
		{Kind: 'x'},
		{Kind: Open, Message: strings.Repeat("m", 200)},
	} {
		if _, err := s.Encode(bad); err == nil {
			t.Errorf("Encode(%+v) accepted", bad)
		}
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

func TestRewriteHTML(t *testing.T) {
	src := `<html><body><p class=x>Hi <a href="https://shop.test/a?x=1&amp;y=2" style="color:red">shop</a>,
<a href="mailto:help@shop.test">mail</a> <a href="#top">top</a> <A HREF='http://b.test/'>b</A>
<a data-petrel-notrack href="https://keep.test/">keep</a> <a clicktracking="off" href="https://keep2.test/">k2</a>
<map><area href="https://area.test/" alt=a></map></p></body></html>`
	var seen []string
	out := RewriteHTML(src, func(n int, href string) (string, bool) {
		seen = append(seen, fmt.Sprintf("%d=%s", n, href))
		return fmt.Sprintf("https://t.test/c/%d", n), true
	}, "https://t.test/o/P")
	if got := strings.Join(seen, " "); got != "0=https://shop.test/a?x=1&y=2 1=http://b.test/ 2=https://area.test/" {
		t.Fatalf("links seen: %s", got)
	}
	for _, want := range []string{
		`<p class=x>Hi <a href="https://t.test/c/0" style="color:red">shop</a>`, // other markup byte for byte
		`<a href="mailto:help@shop.test">mail</a> <a href="#top">top</a> <a href="https://t.test/c/1">b</A>`,
		`<a href="https://keep.test/">keep</a> <a href="https://keep2.test/">k2</a>`,
		`<area href="https://t.test/c/2" alt="a">`,
		`<img src="https://t.test/o/P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px"></body></html>`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, NoTrackAttr) || strings.Contains(out, "clicktracking") {
		t.Error("opt-out attribute left in the output")
	}
	if got := RewriteHTML("<p>no body</p>", func(int, string) (string, bool) { return "", false }, "P"); got != `<p>no body</p><img src="P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">` {
		t.Errorf("pixel without body: %q", got)
	}
}

func TestRewriteText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"See https://shop.test/a?b=1.", "See [0:https://shop.test/a?b=1]."},
		{"(HTTP://x.test/p) and <https://y.test/q>, done", "([0:HTTP://x.test/p]) and <[1:https://y.test/q]>, done"},
		{"wiki https://w.test/A_(b) ok", "wiki [0:https://w.test/A_(b)] ok"},
		{"no links, http:/ broken", "no links, http:/ broken"},
	}
	for _, tc := range tests {
		got := RewriteText(tc.in, func(n int, u string) (string, bool) { return fmt.Sprintf("[%d:%s]", n, u), true })
		if got != tc.want {
			t.Errorf("RewriteText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

type memRecorder struct {
	mu sync.Mutex
	es []Engagement
}

func (m *memRecorder) Record(_ context.Context, e Engagement) {
	m.mu.Lock()
	m.es = append(m.es, e)
	m.mu.Unlock()
}

// TestHandlerOverHTTP serves the tracker on a real loopback socket.
func TestHandlerOverHTTP(t *testing.T) {
	s := newSigner(t, testSecret)
	rec := &memRecorder{}
	now := time.Unix(1764580000, 0)
	h := &Handler{Signer: s, Recorder: rec, Now: func() time.Time { return now }}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, ua string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set("User-Agent", ua)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	sent := now.Add(-time.Hour).Unix()
	open, _ := s.Encode(Token{Kind: Open, Message: "m1", Recipient: "c1", Sent: sent})
	click, _ := s.Encode(Token{Kind: Click, Message: "m1", Recipient: "c1", Link: 2, URL: "https://shop.test/x?y=1", Sent: sent})

	resp := do("GET", OpenPath+open+".gif", "Mozilla/5.0 (Windows NT 10.0) Thunderbird/128")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 43 || !bytes.Equal(body, pixelGIF) || resp.Header.Get("Content-Type") != "image/gif" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("pixel: %d %d bytes %v", resp.StatusCode, len(body), resp.Header)
	}
	resp = do("GET", ClickPath+click, "Mozilla/5.0 (iPhone) Mobile")
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://shop.test/x?y=1" {
		t.Fatalf("click: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	raw, _ := base64.RawURLEncoding.DecodeString(click)
	raw[len(raw)-20] ^= 1 // inside the URL
	for _, path := range []string{
		ClickPath + base64.RawURLEncoding.EncodeToString(raw), // edited
		ClickPath + open,                       // an open token as a click
		OpenPath + click,                       // a click token as an open
		ClickPath + click[:len(click)-3],       // truncated
		ClickPath + strings.Repeat("A", 20000), // huge junk
		"/t/x/" + click,
	} {
		resp := do("GET", path, "Mozilla/5.0")
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Location") != "" {
			t.Errorf("%s...: %d Location %q, want 404 and no redirect", path[:min(len(path), 40)], resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp = do("POST", ClickPath+click, "x")
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	resp = do("HEAD", ClickPath+click, "Mozilla/5.0 (Macintosh)")
	resp.Body.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.es) != 3 {
		t.Fatalf("recorded %d engagements, want 3 (open, click, head click): %+v", len(rec.es), rec.es)
	}
	if e := rec.es[1]; e.Kind != Click || e.Link != 2 || e.URL != "https://shop.test/x?y=1" || e.Recipient != "c1" || e.IP != "127.0.0.1" || e.Machine {
		t.Errorf("click engagement %+v", e)
	}
	if e := rec.es[2]; !e.Machine || e.MachineReason != "head_request" {
		t.Errorf("HEAD click not flagged: %+v", e)
	}
}

func TestClassify(t *testing.T) {
	now := time.Unix(1764580000, 0)
	old := now.Add(-time.Hour).Unix()
	tests := []struct {
		name, method, ua, ip string
		kind                 Kind
		sent                 int64
		machine              bool
		reason, proxy        string
	}{
		{"person", "GET", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131", "203.0.113.9", Click, old, false, "", ""},
		{"apple mpp open", "GET", "Mozilla/5.0", "17.58.1.2", Open, old, true, "apple_mpp", ""},
		{"bare UA elsewhere", "GET", "Mozilla/5.0", "203.0.113.9", Open, old, false, "", ""},
		{"gmail proxy", "GET", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.1.1", Open, old, false, "", "gmail"},
		{"head", "HEAD", "Mozilla/5.0", "203.0.113.9", Click, old, true, "head_request", ""},
		{"scanner", "GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", "203.0.113.9", Click, old, true, "scanner_agent", ""},
		{"no UA", "GET", "", "203.0.113.9", Click, old, true, "no_user_agent", ""},
		{"too soon", "GET", "Mozilla/5.0 (X11; Linux) Firefox/133", "203.0.113.9", Click, now.Add(-3 * time.Second).Unix(), true, "too_soon", ""},
	}
	for _, tc := range tests {
		e := Engagement{Kind: tc.kind, UserAgent: tc.ua, IP: tc.ip, Time: now}
		Classify(&e, tc.method, tc.sent)
		if e.Machine != tc.machine || e.MachineReason != tc.reason || e.Proxy != tc.proxy {
			t.Errorf("%s: machine=%v reason=%q proxy=%q", tc.name, e.Machine, e.MachineReason, e.Proxy)
		}
	}
}

func FuzzDecode(f *testing.F) {
	s := newSigner(f, testSecret)
	good, _ := s.Encode(Token{Kind: Click, Message: "m", Recipient: "r", URL: "https://a.test/"})
	f.Add(good)
	labelled, _ := s.Encode(Token{Kind: Open, Campaign: "c", Message: "m", Recipient: "r", Sent: 9, Provider: "qq", Stream: "marketing"})
	f.Add(labelled)
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, in string) {
		tok, err := s.Decode(in)
		if err != nil {
			return
		}
		// Whatever verifies must re-encode to the same bytes (a version-1
		// token re-encodes as version 2 with the same fields).
		again, err := s.Encode(tok)
		if err != nil {
			t.Fatalf("verified token %q does not re-encode: %v", in, err)
		}
		if raw, _ := base64.RawURLEncoding.DecodeString(in); len(raw) > 0 && raw[0] == tokenVersion1 {
			if back, err := s.Decode(again); err != nil || back != tok {
				t.Fatalf("version-1 token %q: %+v, re-encoded %+v (%v)", in, tok, back, err)
			}
			return
		}
		if again != in {
			t.Fatalf("verified token %q re-encodes to %q", in, again)
		}
	})
}

func FuzzRewriteHTML(f *testing.F) {
	f.Add(`<a href="https://x.test/">x</a></body>`)
	f.Add(`<a href=https://x.test data-petrel-notrack>`)
	f.Add(`<area href="http://y.test"><a>`)
	f.Fuzz(func(t *testing.T, src string) {
		n := 0
		out := RewriteHTML(src, func(i int, href string) (string, bool) {
			if i != n || !trackable(href) {
				t.Fatalf("link %d (want %d) %q", i, n, href)
			}
			n++
			return "https://t.test/c", true
		}, "")
		if low := strings.ToLower(src); n == 0 && !strings.Contains(low, "data-petrel-notrack") && !strings.Contains(low, "clicktracking") && out != src {
			t.Fatalf("no link rewritten but output changed:\n%q\n%q", src, out)
		}
	})
}

// TestTokenVersion1StillDecodes: a version-1 token (before provider and
// stream were sealed) from mail already sent keeps working, with both
// empty; a version-1 body with the extra fields does not verify as one.
func TestTokenVersion1StillDecodes(t *testing.T) {
	s := newSigner(t, testSecret)
	p := []byte{tokenVersion1, byte(Open), 0}
	p = binary.AppendUvarint(p, 1764580000)
	for _, f := range []string{"camp7", "camp7:k42", "contact-42", ""} {
		p = binary.AppendUvarint(p, uint64(len(f)))
		p = append(p, f...)
	}
	got, err := s.Decode(base64.RawURLEncoding.EncodeToString(append(p, s.mac(p)...)))
	if err != nil || got.Campaign != "camp7" || got.Recipient != "contact-42" || got.Provider != "" || got.Sent != 1764580000 {
		t.Fatalf("v1 token: %+v %v", got, err)
	}
	p = append(p, 6, 'g', 'o', 'o', 'g', 'l', 'e', 0)
	if _, err := s.Decode(base64.RawURLEncoding.EncodeToString(append(p, s.mac(p)...))); !errors.Is(err, ErrBadToken) {
		t.Fatalf("v1 token with trailing fields: %v", err)
	}
}
