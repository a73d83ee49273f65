package audience

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type apiClient struct {
	t    *testing.T
	base string
}

// do sends a request and decodes the JSON answer into out (when not nil),
// failing unless the status is want.
func (c apiClient) do(method, path, ctype string, body io.Reader, want int, out any) []byte {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

func (c apiClient) json(method, path string, in any, want int, out any) []byte {
	c.t.Helper()
	var body io.Reader
	if s, ok := in.(string); ok {
		body = strings.NewReader(s)
	} else if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	return c.do(method, path, "application/json", body, want, out)
}

// apiError checks an error body's code and returns its message.
func apiError(t *testing.T, b []byte, code string) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != code {
		t.Fatalf("error body %s, want code %s", b, code)
	}
	return e.Error.Message
}

func TestHTTPAPI(t *testing.T) {
	eachBackend(t, Options{BatchSize: 2}, func(t *testing.T, s *Store) {
		s.opts.ImportDir = t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv := httptest.NewServer(Handler(s, HandlerOptions{Context: ctx}))
		defer srv.Close()
		c := apiClient{t, srv.URL}

		var a Audience
		c.json("POST", "/api/v1/audiences", map[string]any{"name": "news", "fields": []Field{{Name: "city", Type: Text}, {Name: "score", Type: Number}}}, 201, &a)
		apiError(t, c.json("POST", "/api/v1/audiences", `{"name":"news"}`, 409, nil), "audience_exists")
		apiError(t, c.json("POST", "/api/v1/audiences", `{"name":"x","fields":[{"name":"email","type":"text"}]}`, 400, nil), "invalid_field")
		apiError(t, c.json("POST", "/api/v1/audiences", `{"name":`, 400, nil), "invalid_json")
		apiError(t, c.json("POST", "/api/v1/audiences", `{"nme":"x"}`, 400, nil), "invalid_json")
		apiError(t, c.json("GET", "/api/v1/audiences/999", nil, 404, nil), "not_found")
		apiError(t, c.json("GET", "/api/v1/audiences/abc", nil, 400, nil), "invalid_id")
		ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
		c.json("POST", ap+"/fields", `{"fields":[{"name":"vip","type":"boolean"}]}`, 200, &a)
		if len(a.Fields) != 3 {
			t.Fatalf("fields %+v", a.Fields)
		}

		var ct Contact
		c.json("POST", ap+"/contacts", `{"email":"Ann@Example.com","name":"Ann","fields":{"city":"Taipei","score":3,"vip":true},"tags":["vip"]}`, 201, &ct)
		c.json("POST", ap+"/contacts", `{"email":"ann@example.com","fields":{"score":4}}`, 200, &ct)
		if ct.Email != "ann@example.com" || ct.Fields["score"] != 4.0 || ct.Fields["city"] != "Taipei" {
			t.Fatalf("contact %+v", ct)
		}
		msg := apiError(t, c.json("POST", ap+"/contacts", `{"email":"ann@example.com","fields":{"score":"many"}}`, 400, nil), "invalid_value")
		if !strings.Contains(msg, "score") {
			t.Fatalf("message %q does not name the field", msg)
		}
		cp := fmt.Sprintf("%s/contacts/%d", ap, ct.ID)
		c.json("PATCH", cp, `{"name":"Annie"}`, 200, &ct)
		if ct.Name != "Annie" {
			t.Fatalf("patched %+v", ct)
		}
		apiError(t, c.json("PATCH", cp, `{"email":"other@example.com"}`, 400, nil), "invalid_request")

		var bulk struct {
			Results []rowJSON
			Counts  map[string]int
		}
		var rows []map[string]any
		for i := range 30 {
			rows = append(rows, map[string]any{"email": fmt.Sprintf("u%d@example.com", i), "fields": map[string]any{"city": []string{"Taipei", "Oslo"}[i%2], "score": i}, "tags": []string{fmt.Sprintf("t%d", i%3)}})
		}
		rows = append(rows, map[string]any{"email": "broken"})
		c.json("PUT", ap+"/contacts", map[string]any{"contacts": rows}, 200, &bulk)
		if bulk.Counts["created"] != 30 || bulk.Counts["failed"] != 1 || bulk.Results[30].Column != "email" {
			t.Fatalf("bulk %+v", bulk.Counts)
		}

		// Segments: saved, counted and previewed when used.
		var sg Segment
		c.json("POST", ap+"/segments", `{"name":"oslo-high","expression":"city == \"Oslo\" && score >= 10 && !(\"t0\" in tags)"}`, 201, &sg)
		var cnt struct{ Count int }
		sp := fmt.Sprintf("%s/segments/%d", ap, sg.ID)
		c.json("GET", sp+"/count", nil, 200, &cnt)
		// Oslo = odd i; i >= 10; i%3 != 0: 11 13 17 19 23 25 29
		if cnt.Count != 7 {
			t.Fatalf("count %d", cnt.Count)
		}
		c.json("POST", ap+"/contacts", `{"email":"u15@example.com","tags":["t1"]}`, 200, nil) // 15 was t0: now matches
		c.json("GET", sp+"/count", nil, 200, &cnt)
		if cnt.Count != 8 {
			t.Fatalf("count after a change %d: stale", cnt.Count)
		}
		var prev struct{ Contacts []Contact }
		c.json("GET", sp+"/preview?limit=3", nil, 200, &prev)
		if len(prev.Contacts) != 3 || prev.Contacts[0].Email != "u11@example.com" {
			t.Fatalf("preview %+v", prev.Contacts)
		}
		msg = apiError(t, c.json("POST", ap+"/segments/count", `{"expression":"city == \"Oslo\" &&\n  scor > 1"}`, 400, nil), "invalid_expression")
		if !strings.HasPrefix(msg, "2:3:") {
			t.Fatalf("expression error %q does not name 2:3", msg)
		}
		apiError(t, c.json("POST", ap+"/segments", `{"name":"bad","expression":"city =="}`, 400, nil), "invalid_expression")
		c.json("POST", ap+"/segments/preview", `{"expression":"city.startsWith(\"Tai\")","limit":100}`, 200, &prev)
		if len(prev.Contacts) != 16 {
			t.Fatalf("preview (in Go) %d", len(prev.Contacts))
		}

		// Paging with a saved segment by name and by an expression.
		var seen []string
		path := ap + "/contacts?segment=oslo-high&limit=3"
		for {
			var page struct {
				Contacts []Contact
				Next     string
			}
			c.json("GET", path, nil, 200, &page)
			for _, x := range page.Contacts {
				seen = append(seen, x.Email)
			}
			if page.Next == "" {
				break
			}
			path = ap + "/contacts?segment=oslo-high&limit=3&after=" + page.Next
		}
		if len(seen) != 8 {
			t.Fatalf("paged %v", seen)
		}
		apiError(t, c.json("GET", ap+"/contacts?segment=nope", nil, 404, nil), "not_found")
		apiError(t, c.json("GET", ap+"/contacts?where=1%2B", nil, 400, nil), "invalid_expression")

		// Tags in bulk.
		var tagged map[string]int
		c.json("POST", ap+"/tags", map[string]any{"contact_ids": []int64{ct.ID}, "add": []string{"gold"}, "remove": []string{"vip"}}, 200, &tagged)
		c.json("GET", cp, nil, 200, &ct)
		if tagged["contacts"] != 1 || strings.Join(ct.Tags, ",") != "gold" {
			t.Fatalf("tags %v %v", tagged, ct.Tags)
		}

		// Imports: multipart and raw CSV; progress and errors.
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		ow, _ := mw.CreateFormField("options")
		ow.Write([]byte(`{"on_duplicate":"skip","add_tags":["csv"],"mapping":{"Town":"city"}}`))
		fw, _ := mw.CreateFormFile("file", "list.csv")
		fw.Write([]byte("email,Town\nnew1@example.com,Lima\nbad,Lima\nu1@example.com,Nowhere\nnew2@example.com,Quito\n"))
		mw.Close()
		var im Import
		c.do("POST", ap+"/imports", mw.FormDataContentType(), &mp, 202, &im)
		im = waitImport(t, c, im.ID)
		if im.State != ImportDone || im.Created != 2 || im.Skipped != 1 || im.Failed != 1 {
			t.Fatalf("import %+v", im)
		}
		var ie struct{ Errors []ImportError }
		c.json("GET", fmt.Sprintf("/api/v1/imports/%d/errors", im.ID), nil, 200, &ie)
		if len(ie.Errors) != 1 || ie.Errors[0].Line != 3 || ie.Errors[0].Column != "email" {
			t.Fatalf("errors %+v", ie)
		}
		csvErr := c.do("GET", fmt.Sprintf("/api/v1/imports/%d/errors?format=csv", im.ID), "", nil, 200, nil)
		if !strings.HasPrefix(string(csvErr), "line,column,reason\n3,email,") {
			t.Fatalf("csv errors %q", csvErr)
		}
		c.do("POST", ap+"/imports?on_duplicate=update&map.Town=city", "text/csv", strings.NewReader("email,Town\nnew1@example.com,Cusco\n"), 202, &im)
		if im = waitImport(t, c, im.ID); im.Updated != 1 {
			t.Fatalf("raw import %+v", im)
		}
		apiError(t, c.do("POST", ap+"/imports", "text/csv", strings.NewReader("email,town\n"), 400, nil), "unknown_columns")
		apiError(t, c.do("POST", ap+"/imports", "application/xml", strings.NewReader("<x/>"), 400, nil), "unsupported_media_type")
		apiError(t, c.json("GET", "/api/v1/imports/99999", nil, 404, nil), "not_found")

		// Consent, export, erase.
		var rec ConsentRecord
		c.json("POST", cp+"/consent", `{"purpose":"marketing","action":"granted","source":"form","ip":"198.51.100.7","user_agent":"UA","text_version":"2024-01"}`, 201, &rec)
		apiError(t, c.json("POST", cp+"/consent", `{"purpose":"marketing","action":"perhaps","source":"form"}`, 400, nil), "invalid_consent")
		var ex Export
		c.json("GET", cp+"/export", nil, 200, &ex)
		if ex.Contact.Email != "ann@example.com" || len(ex.Consent) != 1 || ex.Consent[0].IP != "198.51.100.7" {
			t.Fatalf("export %+v", ex)
		}
		var er map[string]int
		c.json("POST", cp+"/erase", nil, 200, &er)
		var ex2 Export
		c.json("GET", cp+"/export", nil, 200, &ex2)
		if er["erased"] != 1 || ex2.Contact.Status != Erased || ex2.Contact.Name != "" || len(ex2.Contact.Fields) != 0 || ex2.Consent[0].IP != "" || ex2.Consent[0].TextVersion != "2024-01" {
			t.Fatalf("after erase %v %+v", er, ex2)
		}
		apiError(t, c.json("POST", ap+"/contacts", `{"email":"ann@EXAMPLE.com"}`, 409, nil), "erased")
		apiError(t, c.json("PATCH", cp, `{"name":"x"}`, 409, nil), "erased")

		c.json("DELETE", fmt.Sprintf("%s/contacts/%d", ap, prev.Contacts[0].ID), nil, 204, nil)
		c.json("DELETE", sp, nil, 204, nil)
		apiError(t, c.json("GET", sp, nil, 404, nil), "not_found")
		c.json("DELETE", ap, nil, 204, nil)
		apiError(t, c.json("GET", ap+"/contacts", nil, 404, nil), "not_found")
	})
}

func waitImport(t *testing.T, c apiClient, id int64) Import {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var im Import
		c.json("GET", fmt.Sprintf("/api/v1/imports/%d", id), nil, 200, &im)
		if im.State == ImportDone || im.State == ImportFailed || time.Now().After(deadline) {
			return im
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandlerResumesPendingImports(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		s.opts.ImportDir = t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, _ := s.CreateAudience(ctx, Audience{Name: "r"})
		im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, strings.NewReader("email\nx@example.com\ny@example.com\n"))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(Handler(s, HandlerOptions{Context: ctx, ResumeImports: true}))
		defer srv.Close()
		if got := waitImport(t, apiClient{t, srv.URL}, im.ID); got.State != ImportDone || got.Created != 2 {
			t.Fatalf("resumed %+v", got)
		}
	})
}
