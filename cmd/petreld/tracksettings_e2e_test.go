package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
	"github.com/petrel-mta/petrel/tracking"
)

// TestTrackingSettingsThroughDaemon: API messages sent over a real
// petreld to a real MX follow the tracking switches. With the defaults an
// HTML+text message gets the open pixel and its links become click
// tokens (the click redirects, through the daemon, to the original
// link); a database key whose opens and clicks are off sends the same
// message byte for byte untouched; a sending domain's default (clicks
// off) applies to a key without its own switch, and the key's switch
// wins over it; a request's "tracking" object opts one message out; the
// unsubscribe switch adds List-Unsubscribe to transactional mail or
// keeps it off.
func TestTrackingSettingsThroughDaemon(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "example.test", testnet.MXScript{})
	e.http = freeAddr(t)
	e.extra = fmt.Sprintf("[sending]\nunsubscribe_url = %q\n", "http://"+e.http)
	e.start()

	var k struct{ Secret string }
	if code, err := e.api("POST", "/api/v1/keys", map[string]any{"name": "quiet", "role": "owner"}, &k); err != nil || code != 201 {
		t.Fatalf("create key: %d %v", code, err)
	}
	put := func(scope, name, body string, want int) {
		t.Helper()
		var sw map[string]any
		json.Unmarshal([]byte(body), &sw)
		if code, err := e.api("PUT", "/api/v1/tracking/settings/"+scope+"/"+name, sw, nil); err != nil || code != want {
			t.Fatalf("PUT %s/%s %s: %d %v, want %d", scope, name, body, code, err, want)
		}
	}
	if out, err := e.ctl("tracking", "set", "key", "quiet", "-opens", "off", "-clicks", "off"); err != nil ||
		!strings.Contains(out, "key quiet: opens off, clicks off, unsubscribe inherit") {
		t.Fatalf("petrelctl tracking set: %v %s", err, out)
	}
	put("key", "nobody", `{"opens":false}`, 404)          // no such key
	put("domain", "not a domain", `{"opens":false}`, 400) // malformed
	put("key", "test", `{"unsubscribe":true}`, 200)       // the configured key

	const html = `<html><body><p>Your order: <a href="https://shop.test/orders/17?x=1&amp;y=2">track it</a></p></body></html>`
	const text = "Your order: https://shop.test/orders/17 (text)\n"
	send := func(key, from string, extra map[string]any) (msgID string, m *testnet.Mail) {
		t.Helper()
		req := map[string]any{"from": from, "to": []string{"bo@example.test"}, "subject": "order " + key, "html": html, "text": text}
		for k, v := range extra {
			req[k] = v
		}
		b, _ := json.Marshal(req)
		r, _ := http.NewRequest("POST", "http://"+e.http+"/api/v1/messages", bytes.NewReader(b))
		r.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var raw struct {
			ID        string `json:"id"`
			MessageID string `json:"message_id"`
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 || json.Unmarshal(body, &raw) != nil || raw.MessageID == "" {
			t.Fatalf("send: %d %s", resp.StatusCode, body)
		}
		waitFor(t, 15*time.Second, "delivery of "+raw.MessageID, func() bool {
			for _, d := range mx.Mails() {
				if bytes.Contains(d.Data, []byte(raw.MessageID)) {
					m = &d
					return true
				}
			}
			return false
		})
		return raw.MessageID, m
	}

	// Defaults: pixel and click tokens in both parts; the configured
	// key's unsubscribe switch adds List-Unsubscribe to transactional mail.
	id, m := send(e.key, "shop@sender.test", nil)
	h, tx, hdr := parts(t, m.Data)
	if !strings.Contains(h, "/t/o/") || strings.Contains(h, "https://shop.test/orders/17") || strings.Contains(tx, "https://shop.test/orders/17") {
		t.Fatalf("default key: not tracked:\nHTML %s\nTEXT %s", h, tx)
	}
	if hdr.Get("List-Unsubscribe") == "" {
		t.Fatalf("unsubscribe on for key test: no List-Unsubscribe in\n%s", m.Data)
	}
	s := daemonSigner(t, e)
	var click tracking.Token
	for _, sm := range trackingURL.FindAllStringSubmatch(h, -1) {
		tok, err := s.Decode(sm[2])
		if err != nil {
			t.Fatalf("token %s: %v", sm[0], err)
		}
		if tok.Message != id || tok.Recipient != "" || tok.Stream != "transactional" {
			t.Fatalf("token %+v, want message %s", tok, id)
		}
		if sm[1] == "c" {
			click = tok
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Get(sm[0])
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shop.test/orders/17?x=1&y=2" {
				t.Fatalf("click redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}
	if click.URL != "https://shop.test/orders/17?x=1&y=2" {
		t.Fatalf("no click token for the link in %s", h)
	}

	// The quiet key: no pixel, links as written, and no List-Unsubscribe
	// (the transactional stream's default).
	_, m = send(k.Secret, "shop@sender.test", nil)
	h, tx, hdr = parts(t, m.Data)
	if strings.TrimSuffix(h, "\n") != html || tx != text || hdr.Get("List-Unsubscribe") != "" { // a part ends with a line end
		t.Fatalf("quiet key: message changed:\nHTML %q\nTEXT %q\nList-Unsubscribe %q", h, tx, hdr.Get("List-Unsubscribe"))
	}

	// A sending domain's default applies to keys without their own
	// switch: clicks off for news.test, opens still on.
	put("domain", "news.test", `{"clicks":false}`, 200)
	_, m = send(e.key, "info@news.test", nil)
	h, tx, _ = parts(t, m.Data)
	if !strings.Contains(h, "/t/o/") || !strings.Contains(h, `href="https://shop.test/orders/17?x=1&amp;y=2"`) || tx != text {
		t.Fatalf("domain clicks off: HTML %s TEXT %q", h, tx)
	}
	var eff tracking.Effective
	if code, err := e.api("GET", "/api/v1/tracking/settings/effective?key=quiet&domain=news.test", nil, &eff); err != nil || code != 200 || eff.Opens || eff.Clicks {
		t.Fatalf("effective quiet@news.test: %d %v %+v", code, err, eff)
	}
	// The key's own switch wins over the domain: clicks on for test.
	put("key", "test", `{"clicks":true,"unsubscribe":false}`, 200)
	_, m = send(e.key, "info@news.test", nil)
	h, _, hdr = parts(t, m.Data)
	if strings.Contains(h, "https://shop.test/orders/17") || hdr.Get("List-Unsubscribe") != "" {
		t.Fatalf("key over domain: HTML %s List-Unsubscribe %q", h, hdr.Get("List-Unsubscribe"))
	}

	// One request opts out of opens; clicks stay tracked.
	_, m = send(e.key, "shop@sender.test", map[string]any{"tracking": map[string]any{"opens": false}})
	h, _, _ = parts(t, m.Data)
	if strings.Contains(h, "/t/o/") || !strings.Contains(h, "/t/c/") {
		t.Fatalf("request opt-out of opens: %s", h)
	}

	// Settings survive a restart and are listed.
	e.stop()
	e.start()
	var list struct {
		Settings []tracking.ScopeSetting
	}
	if code, err := e.api("GET", "/api/v1/tracking/settings", nil, &list); err != nil || code != 200 || len(list.Settings) != 3 ||
		list.Settings[0].Name != "news.test" || list.Settings[1].Name != "quiet" || *list.Settings[1].Opens {
		t.Fatalf("settings after restart: %d %v %+v", code, err, list)
	}
	if out, err := e.ctl("tracking", "settings"); err != nil || !regexp.MustCompile(`key\s+quiet\s+off\s+off\s+inherit`).MatchString(out) {
		t.Fatalf("petrelctl tracking settings: %v\n%s", err, out)
	}
	if code, err := e.api("DELETE", "/api/v1/tracking/settings/key/quiet", nil, nil); err != nil || code != 200 {
		t.Fatalf("delete: %d %v", code, err)
	}
	_, m = send(k.Secret, "shop@sender.test", nil)
	if h, _, _ = parts(t, m.Data); !strings.Contains(h, "/t/o/") {
		t.Fatalf("quiet key after DELETE: not tracked: %s", h)
	}
}

// parts returns the decoded HTML and text parts and the header of a
// delivered multipart/alternative message.
func parts(t *testing.T, data []byte) (html, text string, h mail.Header) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type: %v", err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(p) // NextPart decodes quoted-printable
		b := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
			html = string(b)
		} else {
			text = string(b)
		}
	}
	return html, text, m.Header
}
