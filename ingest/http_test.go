package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/internal/httpapi"
	"github.com/petrel-mta/petrel/queue"
)

type httpEnv struct {
	url string
	q   *queue.Queue
	reg *prometheus.Registry
}

var testKeys = []config.APIKey{
	{Name: "app", Key: "app-key"},
	{Name: "news", Key: "news-key", Stream: "marketing"},
}

func startHTTP(t *testing.T, mod func(*HTTPOptions)) *httpEnv {
	t.Helper()
	e := &httpEnv{q: openQueue(t), reg: prometheus.NewRegistry()}
	o := HTTPOptions{Hostname: "api.petrel.test", Keys: httpapi.NewKeys(testKeys), MaxMessageSize: 32 << 10,
		Spool: e.q, Logger: slog.New(slog.DiscardHandler), Registry: e.reg,
		Policy: &testPolicy{
			suppressed: map[string]string{"marketing unsub@example.com": "unsubscribe", "transactional gone@example.com": "hard_bounce"},
			badSenders: map[string]bool{"unverified.test": true},
		}}
	if mod != nil {
		mod(&o)
	}
	srv := httptest.NewServer(NewHTTPHandler(o))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *httpEnv) do(t *testing.T, method, path, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, b
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestHTTPErrors(t *testing.T) {
	e := startHTTP(t, nil)
	big := strings.Repeat("x", 40<<10)
	tests := []struct {
		name   string
		key    string
		body   string
		status int
		code   string
	}{
		{"no key", "", `{"from":"a@example.org","to":["b@example.com"],"text":"hi"}`, 401, "unauthorized"},
		{"wrong key", "app-kee", `{"from":"a@example.org","to":["b@example.com"],"text":"hi"}`, 401, "unauthorized"},
		{"bad json", "app-key", `{"from":`, 400, "invalid_request"},
		{"not an object", "app-key", `["a"]`, 400, "invalid_request"},
		{"unknown field", "app-key", `{"from":"a@example.org","to":["b@example.com"],"text":"hi","cc":["x@y.z"]}`, 400, "invalid_request"},
		{"two objects", "app-key", `{"from":"a@example.org","to":["b@example.com"],"text":"hi"}{}`, 400, "invalid_request"},
		{"wrong type", "app-key", `{"from":"a@example.org","to":"b@example.com","text":"hi"}`, 400, "invalid_request"},
		{"missing from", "app-key", `{"to":["b@example.com"],"text":"hi"}`, 400, "invalid_request"},
		{"missing to", "app-key", `{"from":"a@example.org","text":"hi"}`, 400, "invalid_request"},
		{"empty to", "app-key", `{"from":"a@example.org","to":[],"text":"hi"}`, 400, "invalid_request"},
		{"missing body", "app-key", `{"from":"a@example.org","to":["b@example.com"],"subject":"s"}`, 400, "invalid_request"},
		{"bad from", "app-key", `{"from":"a@@example.org","to":["b@example.com"],"text":"hi"}`, 400, "invalid_address"},
		{"bad to", "app-key", `{"from":"a@example.org","to":["b@example.com","nope"],"text":"hi"}`, 400, "invalid_address"},
		{"raw and text", "app-key", `{"from":"a@example.org","to":["b@example.com"],"raw":"Subject: x\r\n\r\nhi","text":"hi"}`, 400, "invalid_request"},
		{"bad stream", "app-key", `{"from":"a@example.org","to":["b@example.com"],"text":"hi","stream":"no way"}`, 400, "invalid_request"},
		{"request too large", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Text: strings.Repeat(big, 2)}), 413, "message_too_large"},
		{"message too large", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Text: big}), 413, "message_too_large"},
		{"CRLF in from", "app-key", mustJSON(SendRequest{From: "a@example.org\r\nBcc: x@evil.test", To: []string{"b@example.com"}, Text: "hi"}), 422, "header_injection"},
		{"LF in to", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com\nBcc: x@evil.test"}, Text: "hi"}), 422, "header_injection"},
		{"CRLF in subject", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Subject: "hi\r\nBcc: x@evil.test", Text: "hi"}), 422, "header_injection"},
		{"CR in header value", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Headers: map[string]string{"X-A": "1\rBcc: x@evil.test"}, Text: "hi"}), 422, "header_injection"},
		{"LF in header name", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Headers: map[string]string{"X-A\nBcc": "x@evil.test"}, Text: "hi"}), 422, "invalid_message"},
		{"colon in header name", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Headers: map[string]string{"Bcc: x@evil.test\r\nX": "1"}, Text: "hi"}), 422, "invalid_message"},
		{"reserved header", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Headers: map[string]string{"content-type": "text/evil"}, Text: "hi"}), 422, "invalid_message"},
		{"CRLF in campaign", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Campaign: "c\r\nX: y", Text: "hi"}), 422, "header_injection"},
		{"raw not a message", "app-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Raw: "no header line here\r\n\r\nbody"}), 422, "invalid_message"},
		{"all suppressed", "news-key", mustJSON(SendRequest{From: "a@example.org", To: []string{"unsub@example.com"}, Text: "hi"}), 422, "all_suppressed"},
		{"unverified sender", "app-key", mustJSON(SendRequest{From: "a@unverified.test", To: []string{"b@example.com"}, Text: "hi"}), 422, "sender_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(t, "POST", "/api/v1/messages", tt.key, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			var eb httpapi.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != tt.code || eb.Error.Message == "" {
				t.Fatalf("error body %s (%v), want code %s", body, err, tt.code)
			}
		})
	}
	// Nothing was queued by any of them; the service still works.
	if infos, _, err := e.q.List(t.Context(), "", 10); err != nil || len(infos) != 0 {
		t.Fatalf("queued after errors: %d (%v)", len(infos), err)
	}
	status, body := e.do(t, "POST", "/api/v1/messages", "app-key", `{"from":"a@example.org","to":["b@example.com"],"text":"hi"}`)
	if status != 202 {
		t.Fatalf("after errors: %d %s", status, body)
	}
	if n := metricValue(t, e.reg, "petrel_ingest_messages_total", "http", resultRejected); n != float64(len(tests)-2) {
		t.Errorf("rejected counter %v, want %d (401s are not counted)", n, len(tests)-2)
	}
}

// TestHTTPRaw: a raw message is stored byte-identical apart from the
// headers Petrel adds on top.
func TestHTTPRaw(t *testing.T) {
	e := startHTTP(t, func(o *HTTPOptions) { o.CampaignStream = "marketing" })
	tests := []struct {
		name     string
		key      string
		req      SendRequest
		stored   string // expected suffix of the stored body
		stream   string
		statuses []string
		addsID   bool
	}{
		{"complete message", "app-key", SendRequest{From: "a@example.org", To: []string{"b@example.com", "Carol <c@example.net>"},
			Raw: "Message-ID: <1@x>\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nFrom: a@example.org\r\nSubject: raw\r\n\r\nline 1\r\n.\r\nline 3 caf\xc3\xa9\r\n"},
			"Message-ID: <1@x>\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nFrom: a@example.org\r\nSubject: raw\r\n\r\nline 1\r\n.\r\nline 3 caf\xc3\xa9\r\n",
			"transactional", []string{"queued", "queued"}, false},
		{"bare LF and no ids", "app-key", SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Raw: "From: a@example.org\nSubject: lf\n\nbody\n"},
			"From: a@example.org\r\nSubject: lf\r\n\r\nbody\r\n", "transactional", []string{"queued"}, true},
		{"stream header removed", "app-key", SendRequest{From: "a@example.org", To: []string{"b@example.com", "unsub@example.com"},
			Raw: "From: a@example.org\r\nX-Petrel-Stream: marketing\r\nSubject: s\r\n\r\nbody\r\n"},
			"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n", "marketing", []string{"queued", "suppressed"}, true},
		{"key stream", "news-key", SendRequest{From: "a@example.org", To: []string{"gone@example.com", "unsub@example.com", "b@example.com"},
			Raw: "From: a@example.org\r\n\r\nbody\r\n"}, "From: a@example.org\r\n\r\nbody\r\n", "marketing", []string{"queued", "suppressed", "queued"}, true},
		{"request stream beats key", "news-key", SendRequest{From: "a@example.org", To: []string{"gone@example.com", "unsub@example.com"}, Stream: "transactional",
			Raw: "From: a@example.org\r\n\r\nbody\r\n"}, "From: a@example.org\r\n\r\nbody\r\n", "transactional", []string{"suppressed", "queued"}, true},
		{"campaign goes to the campaign stream", "app-key", SendRequest{From: "a@example.org", To: []string{"gone@example.com", "unsub@example.com"}, Campaign: "spring",
			Raw: "From: a@example.org\r\n\r\nbody\r\n"}, "From: a@example.org\r\n\r\nbody\r\n", "marketing", []string{"queued", "suppressed"}, true},
		{"request stream beats campaign", "app-key", SendRequest{From: "a@example.org", To: []string{"gone@example.com", "unsub@example.com"}, Campaign: "spring", Stream: "transactional",
			Raw: "From: a@example.org\r\n\r\nbody\r\n"}, "From: a@example.org\r\n\r\nbody\r\n", "transactional", []string{"suppressed", "queued"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(t, "POST", "/api/v1/messages", tt.key, mustJSON(tt.req))
			if status != 202 {
				t.Fatalf("status %d: %s", status, body)
			}
			var resp SendResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Stream != tt.stream || len(resp.Recipients) != len(tt.statuses) {
				t.Fatalf("response %s", body)
			}
			var queued []string
			for i, r := range resp.Recipients {
				if r.Status != tt.statuses[i] {
					t.Errorf("recipient %d %+v, want %s", i, r, tt.statuses[i])
				}
				if r.Status == "queued" {
					queued = append(queued, r.Address)
				}
			}
			stored, err := e.q.Body(resp.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(stored), tt.stored) {
				t.Fatalf("stored body:\n%q\nwant suffix\n%q", stored, tt.stored)
			}
			added := strings.TrimSuffix(string(stored), tt.stored)
			if !strings.HasPrefix(added, "X-Test-Prepared: "+tt.stream+"\r\nReceived: from api-key=") || !strings.Contains(added, "by api.petrel.test (Petrel) with HTTP id ") {
				t.Errorf("added headers:\n%s", added)
			}
			if strings.Contains(added, "Message-ID:") != tt.addsID || strings.Contains(added, "\r\nDate:") != tt.addsID {
				t.Errorf("Message-ID/Date added wrongly:\n%s", added)
			}
			// The queue holds the queued recipients (GET /api/v1/messages/{id}
			// is admin's, over the same queue).
			mi, err := e.q.Message(resp.ID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range mi.Recipients {
				got = append(got, r.Addr)
				if r.State != queue.StateQueued {
					t.Errorf("state %s", r.State)
				}
			}
			if mi.ID != resp.ID || mi.Stream != tt.stream || mi.Source != "http" || strings.Join(got, ",") != strings.Join(queued, ",") {
				t.Errorf("queued message %+v, want recipients %v", mi, queued)
			}
		})
	}
}

func TestHTTPGetErrors(t *testing.T) {
	e := startHTTP(t, nil)
	tests := []struct {
		method, path, key string
		status            int
		code              string
	}{
		{"GET", "/api/v1/messages/nope", "app-key", 404, "not_found"}, // served by admin, not here
		{"POST", "/api/v1/messages", "", 401, "unauthorized"},
		{"GET", "/api/v2/other", "app-key", 404, "not_found"},
	}
	for _, tt := range tests {
		status, body := e.do(t, tt.method, tt.path, tt.key, "")
		var eb httpapi.ErrorBody
		if status != tt.status || json.Unmarshal(body, &eb) != nil || eb.Error.Code != tt.code {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, status, body)
		}
	}
}

func TestHTTPSpoolFailure(t *testing.T) {
	e := startHTTP(t, func(o *HTTPOptions) { o.Spool = failingSpool{} })
	status, body := e.do(t, "POST", "/api/v1/messages", "app-key", `{"from":"a@example.org","to":["b@example.com"],"text":"hi"}`)
	if status != 503 || !strings.Contains(string(body), "temporary_failure") {
		t.Fatalf("%d %s", status, body)
	}
}

// TestHTTPBuilt: the built MIME message parses back with net/mail and
// mime/multipart to exactly what was sent.
func TestHTTPBuilt(t *testing.T) {
	e := startHTTP(t, nil)
	longLine := strings.Repeat("long ", 300)
	tests := []struct {
		name string
		req  SendRequest
		// wantTypes are the expected content types in order (one for a
		// single part).
		wantTypes []string
		wantCTE   []string
	}{
		{"text ascii", SendRequest{From: "a@example.org", To: []string{"b@example.com"}, Subject: "Hello", Text: "Hi Bob,\nsee you.\n"},
			[]string{"text/plain"}, []string{"7bit"}},
		{"html utf8", SendRequest{From: "Zoë <a@example.org>", To: []string{"b@example.com"}, Subject: "Grüße aus Köln ☕", HTML: "<p>Grüße</p>"},
			[]string{"text/html"}, []string{"quoted-printable"}},
		{"alternative", SendRequest{From: "a@example.org", To: []string{"b@example.com", "C <c@example.net>"}, Subject: "both",
			Text: "plain " + longLine, HTML: "<b>bold</b>", Headers: map[string]string{"X-Campaign-Ref": "spring", "List-Id": "Ünïcode list"}},
			[]string{"text/plain", "text/html"}, []string{"quoted-printable", "7bit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(t, "POST", "/api/v1/messages", "app-key", mustJSON(tt.req))
			if status != 202 {
				t.Fatalf("%d %s", status, body)
			}
			var resp SendResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			stored, err := e.q.Body(resp.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkBuilt(t, stored, tt.req, tt.wantTypes, tt.wantCTE)
		})
	}
}

// checkBuilt parses msg and compares it with req.
func checkBuilt(t testing.TB, msg []byte, req SendRequest, wantTypes, wantCTE []string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("stored message does not parse: %v\n%s", err, msg)
	}
	dec := new(mime.WordDecoder)
	if subj, err := dec.DecodeHeader(m.Header.Get("Subject")); err != nil || subj != req.Subject {
		t.Errorf("Subject %q (%v), want %q", subj, err, req.Subject)
	}
	from, err := m.Header.AddressList("From")
	if err != nil || len(from) != 1 {
		t.Fatalf("From %q: %v", m.Header.Get("From"), err)
	}
	if want, _ := mail.ParseAddress(req.From); from[0].String() != want.String() {
		t.Errorf("From %v, want %v", from[0], want)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != len(req.To) {
		t.Errorf("To %q: %v", m.Header.Get("To"), err)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := m.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || !strings.Contains(id, "@") {
		t.Errorf("Message-ID %q", id)
	}
	if m.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("MIME-Version %q", m.Header.Get("MIME-Version"))
	}
	for k, v := range req.Headers {
		if got, err := dec.DecodeHeader(m.Header.Get(k)); err != nil || got != v {
			t.Errorf("header %s = %q (%v), want %q", k, got, err, v)
		}
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	wantBodies := []string{req.Text, req.HTML}
	if req.Text == "" {
		wantBodies = []string{req.HTML}
	} else if req.HTML == "" {
		wantBodies = []string{req.Text}
	}
	type part struct{ ctype, cte, body string }
	var parts []part
	if len(wantTypes) == 1 {
		raw, _ := io.ReadAll(m.Body)
		parts = append(parts, part{mt, m.Header.Get("Content-Transfer-Encoding"), decodeCTE(t, m.Header.Get("Content-Transfer-Encoding"), raw)})
	} else {
		if mt != "multipart/alternative" {
			t.Fatalf("Content-Type %s", mt)
		}
		mr := multipart.NewReader(m.Body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			raw, _ := io.ReadAll(p)
			cte := p.Header.Get("Content-Transfer-Encoding")
			parts = append(parts, part{pt, cte, decodeCTE(t, cte, raw)})
		}
	}
	if len(parts) != len(wantTypes) {
		t.Fatalf("%d parts, want %d", len(parts), len(wantTypes))
	}
	for i, p := range parts {
		if p.ctype != wantTypes[i] || (wantCTE != nil && p.cte != wantCTE[i]) {
			t.Errorf("part %d: %s %s, want %s %s", i, p.ctype, p.cte, wantTypes[i], wantCTE[i])
		}
		want := lineBreaks.Replace(wantBodies[i])
		got := lineBreaks.Replace(p.body)
		if strings.TrimSuffix(got, "\n") != strings.TrimSuffix(want, "\n") {
			t.Errorf("part %d body %q, want %q", i, got, want)
		}
	}
}

func decodeCTE(t testing.TB, cte string, raw []byte) string {
	t.Helper()
	switch strings.ToLower(cte) {
	case "quoted-printable":
		b, err := io.ReadAll(quotedPrintableReader(raw))
		if err != nil {
			t.Fatalf("quoted-printable: %v", err)
		}
		return string(b)
	case "7bit":
		if has8bit(raw) {
			t.Fatalf("8-bit data in a 7bit part")
		}
		return string(raw)
	}
	t.Fatalf("unexpected transfer encoding %q", cte)
	return ""
}

func quotedPrintableReader(raw []byte) io.Reader {
	return quotedprintable.NewReader(bytes.NewReader(raw))
}

// TestSharedRegistry: SMTP and HTTP ingest register on one registry and
// count per listener.
func TestSharedRegistry(t *testing.T) {
	se := startSMTP(t, testSMTPConfig(), nil)
	he := startHTTP(t, func(o *HTTPOptions) { o.Registry = se.reg; o.Spool = se.q })
	v := dial(t, se.addr)
	v.cmd("EHLO c.test", 250, "")
	v.cmd("MAIL FROM:<a@example.org>", 250, "")
	v.cmd("RCPT TO:<b@example.com>", 250, "")
	v.data(simpleMsg, 250, "queued as")
	if status, body := he.do(t, "POST", "/api/v1/messages", "app-key", `{"from":"a@example.org","to":["b@example.com","c@example.com"],"text":"hi"}`); status != 202 {
		t.Fatalf("%d %s", status, body)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"petrel_ingest_messages_total", []string{"smtp", resultQueued}, 1},
		{"petrel_ingest_messages_total", []string{"http", resultQueued}, 1},
		{"petrel_ingest_recipients_total", []string{"smtp"}, 1},
		{"petrel_ingest_recipients_total", []string{"http"}, 2},
		{"petrel_ingest_ack_seconds", []string{"smtp"}, 1},
		{"petrel_ingest_ack_seconds", []string{"http"}, 1},
	} {
		if got := metricValue(t, se.reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
