package main

import (
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestDoubleOptInThroughDaemon: a contact added to a double opt-in
// audience over the API is pending; petreld mails it one confirmation
// through ingest, queue and delivery to a real MX host on loopback; the
// link's GET shows a form and confirms nothing; a forged token is 400;
// the POST makes the contact active and the ledger records the grant
// with IP and user agent. A second contact's link, unused past
// [esp] confirm_ttl (15s), is 410 and leaves it pending. The confirmation
// outbox survives kill -9: a contact added right before the kill is
// mailed after the restart, once.
func TestDoubleOptInThroughDaemon(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	got := map[string][]string{} // recipient -> decoded bodies
	e.mx(2, "example.test", testnet.MXScript{OnData: func(from string, rcpts []string, data []byte) error {
		m, err := mail.ReadMessage(strings.NewReader(string(data)))
		if err != nil {
			return err
		}
		var body []byte
		if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body, err = io.ReadAll(quotedprintable.NewReader(m.Body))
		} else {
			body, err = io.ReadAll(m.Body)
		}
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rcpts {
			got[r] = append(got[r], m.Header.Get("Subject")+"\n"+string(body))
		}
		return nil
	}})
	e.extra = "[sending]\nunsubscribe_url = \"https://mail.shop.test\"\n\n[esp]\nconfirm_ttl = \"15s\"\n"
	e.start()

	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "news", "double_opt_in": true}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
	var bad struct{ Error struct{ Code string } }
	if code, _ := e.api("PUT", ap+"/opt-in", map[string]any{"from": "news@shop.test", "subject": "Confirm", "body": "no link here"}, &bad); code != 400 || bad.Error.Code != "invalid_opt_in" {
		t.Fatalf("opt-in settings without a link: %d %+v", code, bad)
	}
	if code, err := e.api("PUT", ap+"/opt-in", map[string]any{"from": "news@shop.test", "from_name": "Shop", "subject": "Please confirm Shop news",
		"body": "Hello %name%,\n\nconfirm here: %confirm_url%\n", "consent_text": "news-form-v2"}, nil); err != nil || code != 200 {
		t.Fatalf("opt-in settings: %d %v", code, err)
	}
	add := func(email string) int64 {
		var c struct {
			ID     int64
			Status string
		}
		if code, err := e.api("POST", ap+"/contacts", map[string]any{"email": email, "name": "Ann"}, &c); err != nil || code != 201 {
			t.Fatalf("add contact: %d %v", code, err)
		}
		if c.Status != "pending" {
			t.Fatalf("new contact of a double opt-in audience is %q, want pending", c.Status)
		}
		return c.ID
	}
	status := func(id int64) string {
		var c struct{ Status string }
		e.api("GET", fmt.Sprintf("%s/contacts/%d", ap, id), nil, &c)
		return c.Status
	}
	link := regexp.MustCompile(`https://mail\.shop\.test(/confirm/[A-Za-z0-9_.-]+)`)
	linkFor := func(addr string) string {
		var path string
		waitFor(t, 30*time.Second, "confirmation to "+addr, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(got[addr]) == 0 {
				return false
			}
			m := link.FindStringSubmatch(got[addr][0])
			if m == nil {
				t.Fatalf("confirmation without a link: %q", got[addr][0])
			}
			if !strings.HasPrefix(got[addr][0], "Please confirm Shop news\nHello Ann,") {
				t.Errorf("confirmation text: %q", got[addr][0])
			}
			path = m[1]
			return true
		})
		return "http://" + e.http + path
	}
	do := func(method, url string) (int, string) {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("User-Agent", "E2E-Browser/2.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	ann := add("ann@example.test")
	bob := add("bob@example.test")
	annURL, bobURL := linkFor("ann@example.test"), linkFor("bob@example.test")
	bobMailed := time.Now()
	// A link scanner's GET: a page with a button, nothing confirmed.
	if code, page := do("GET", annURL); code != 200 || !strings.Contains(page, `<form method="post">`) {
		t.Fatalf("GET confirm = %d %s", code, page)
	}
	if s := status(ann); s != "pending" {
		t.Fatalf("after GET: %s, want pending", s)
	}
	forged := annURL[:len(annURL)-3] + "AAA"
	if strings.HasSuffix(annURL, "AAA") {
		forged = annURL[:len(annURL)-3] + "BBB"
	}
	if code, _ := do("POST", forged); code != 400 {
		t.Errorf("forged token POST = %d, want 400", code)
	}
	if code, page := do("POST", annURL); code != 200 || !strings.Contains(page, "is subscribed") {
		t.Fatalf("POST confirm = %d %s", code, page)
	}
	if s := status(ann); s != "active" {
		t.Fatalf("after POST: %s, want active", s)
	}
	var ledger struct {
		Consent []struct {
			Purpose, Action, Source, IP string
			UserAgent                   string `json:"user_agent"`
			TextVersion                 string `json:"text_version"`
			At                          time.Time
		}
	}
	if code, err := e.api("GET", fmt.Sprintf("%s/contacts/%d/consent", ap, ann), nil, &ledger); err != nil || code != 200 {
		t.Fatalf("consent: %d %v", code, err)
	}
	if len(ledger.Consent) != 1 {
		t.Fatalf("ledger %+v, want one grant", ledger)
	}
	if g := ledger.Consent[0]; g.Action != "granted" || g.Source != "double_opt_in" || g.Purpose != "marketing" || g.IP != "127.0.0.1" ||
		g.UserAgent != "E2E-Browser/2.0" || g.TextVersion != "news-form-v2" || time.Since(g.At) > time.Minute {
		t.Errorf("grant %+v", g)
	}

	// The outbox is durable: a contact added just before kill -9 gets its
	// confirmation after the restart.
	carl := add("carl@example.test")
	e.kill()
	e.start()
	carlURL := linkFor("carl@example.test")
	if code, page := do("GET", carlURL); code != 200 || !strings.Contains(page, "carl@example.test") {
		t.Errorf("GET carl's link after the restart = %d %s", code, page)
	}

	// Bob's link expires unused.
	time.Sleep(time.Until(bobMailed.Add(16 * time.Second)))
	if code, page := do("POST", bobURL); code != 410 || !strings.Contains(page, "expired") {
		t.Errorf("expired link POST = %d %s, want 410", code, page)
	}
	if s := status(bob); s != "pending" {
		t.Errorf("expired link made bob %s", s)
	}
	time.Sleep(2 * time.Second) // any duplicate confirmation would have arrived
	mu.Lock()
	defer mu.Unlock()
	for _, addr := range []string{"ann@example.test", "bob@example.test", "carl@example.test"} {
		if n := len(got[addr]); n != 1 {
			t.Errorf("%s got %d confirmations, want 1", addr, n)
		}
	}
	if s := status(carl); s != "pending" {
		t.Errorf("carl is %s before confirming", s)
	}
}
