package verify

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

func TestHTTPSingle(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, testConfig(), t.TempDir())
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()
	cases := []struct {
		query   string
		status  int
		verdict Verdict
	}{
		{"address=" + url.QueryEscape("alice@ok.test"), 200, Deliverable},
		{"address=" + url.QueryEscape("nosuchuser@ok.test"), 200, Undeliverable},
		{"address=" + url.QueryEscape("alice@ok.test") + "&quick=1", 200, Unknown},
		{"address=" + url.QueryEscape("not an address"), 200, Undeliverable},
		{"", 400, ""},
	}
	for _, c := range cases {
		resp, err := http.Get(srv.URL + "/api/v1/verify?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		var e struct {
			Error struct{ Code, Message string }
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d %s", c.query, resp.StatusCode, body)
			continue
		}
		if c.status != 200 {
			if json.Unmarshal(body, &e) != nil || e.Error.Code != "bad_request" {
				t.Errorf("%s: error body %s", c.query, body)
			}
			continue
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Verdict != c.verdict {
			t.Errorf("%s: %s (%v)", c.query, body, err)
		}
	}
}

func TestHTTPJob(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, testConfig(), t.TempDir())
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()
	bodies := []struct {
		ctype, body string
	}{
		{"text/csv", "name,Email\nAlice,alice@ok.test\nNobody,nosuchuser@ok.test\n\nFull,full@ok.test\nBad,bad@@x\n"},
		{"application/json", `{"addresses":["alice@ok.test","nosuchuser@ok.test","full@ok.test","bad@@x"]}`},
		{"application/json", `["alice@ok.test","nosuchuser@ok.test","full@ok.test","bad@@x"]`},
	}
	for _, b := range bodies {
		resp, err := http.Post(srv.URL+"/api/v1/verify/jobs", b.ctype, strings.NewReader(b.body))
		if err != nil {
			t.Fatal(err)
		}
		var st JobStatus
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || st.ID == "" || st.Total != 4 {
			t.Fatalf("%s: create %d %+v", b.ctype, resp.StatusCode, st)
		}
		ok := testnet.Wait(10*time.Second, func() bool {
			resp, err := http.Get(srv.URL + "/api/v1/verify/jobs/" + st.ID)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			json.NewDecoder(resp.Body).Decode(&st)
			return st.State == JobDone
		})
		if !ok || st.Buckets["valid"] != 1 || st.Buckets["risky"] != 1 || st.Buckets["invalid"] != 2 {
			t.Fatalf("%s: job %+v", b.ctype, st)
		}
		// CSV, invalid bucket only.
		resp, err = http.Get(srv.URL + "/api/v1/verify/jobs/" + st.ID + "/results?format=csv&bucket=invalid")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || len(rows) != 3 || rows[0][1] != "address" {
			t.Fatalf("csv results %v %v", rows, err)
		}
		got := map[string]string{rows[1][1]: rows[1][3], rows[2][1]: rows[2][3]}
		if got["nosuchuser@ok.test"] != "undeliverable" || got["bad@@x"] != "undeliverable" {
			t.Fatalf("csv invalid bucket %v", rows)
		}
		// JSON, all.
		resp, err = http.Get(srv.URL + "/api/v1/verify/jobs/" + st.ID + "/results?format=json")
		if err != nil {
			t.Fatal(err)
		}
		var lines []JobLine
		err = json.NewDecoder(resp.Body).Decode(&lines)
		resp.Body.Close()
		if err != nil || len(lines) != 4 {
			t.Fatalf("json results %d %v", len(lines), err)
		}
	}
	// Errors.
	errCases := []struct {
		method, path, ctype, body string
		status                    int
	}{
		{"POST", "/api/v1/verify/jobs", "application/json", `{"addresses":[]}`, 400},
		{"POST", "/api/v1/verify/jobs", "application/json", `{nope`, 400},
		{"POST", "/api/v1/verify/jobs", "image/png", `x`, 415},
		{"GET", "/api/v1/verify/jobs/unknown", "", "", 404},
		{"GET", "/api/v1/verify/jobs/unknown/results", "", "", 404},
	}
	for _, c := range errCases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s %q: %d, want %d", c.method, c.path, c.body, resp.StatusCode, c.status)
		}
	}
}

func TestParseCSV(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"a@x.org\nb@x.org\n", []string{"a@x.org", "b@x.org"}},
		{"email\na@x.org\n", []string{"a@x.org"}},
		{"\ufeffEmail,name\na@x.org,A\n,B\n", []string{"a@x.org"}},
		{"first,last,address\nA,B,a@x.org\nshort\n", []string{"a@x.org"}},
		{`"""john, doe""@x.org",J` + "\n", []string{`"john, doe"@x.org`}},
	}
	for _, c := range cases {
		got, err := ParseCSV(strings.NewReader(c.in))
		if err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("ParseCSV(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzParseCSV: uploaded lists are untrusted; the reader must not panic
// and every returned address is trimmed and non-empty.
func FuzzParseCSV(f *testing.F) {
	f.Add("email\na@b.c\n")
	f.Add("x,\"y\nz\"\n\ufeffq")
	f.Add("\"\"\"\n,,,\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCSV(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, a := range got {
			if a == "" || a != strings.TrimSpace(a) {
				t.Fatalf("bad entry %q", a)
			}
		}
	})
}

// FuzzParseJSONList: a job's JSON body is untrusted; the decoder must not
// panic, must accept exactly a JSON array of strings or an object with an
// "addresses" array, and what it returns must survive a round trip.
func FuzzParseJSONList(f *testing.F) {
	for _, s := range []string{`["a@b.test","c@d.test"]`, `{"addresses":["a@b.test"]}`, `[]`, `{}`, `null`,
		`[1,2]`, `{"addresses":"a@b.test"}`, `["a@b.test"] trailing`, `{"addresses":["\u0000"],"x":1}`, `[` + strings.Repeat(`"x",`, 50) + `"y"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseJSONList(bytes.NewReader(b))
		if err != nil {
			return
		}
		var list []string
		var obj struct {
			Addresses []string `json:"addresses"`
		}
		if json.Unmarshal(b, &list) != nil && json.Unmarshal(b, &obj) != nil {
			t.Fatalf("accepted %q, which is neither a list nor an object of addresses", b)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseJSONList(bytes.NewReader(again))
		if err != nil || strings.Join(back, "\x00") != strings.Join(got, "\x00") {
			t.Fatalf("round trip of %q: %q, %v", got, back, err)
		}
	})
}

// TestInterruptedJob: a job whose daemon died mid-run is reported
// interrupted after restart, with progress recounted from its results
// file (including a torn last line).
func TestInterruptedJob(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t)
	v := f.verifier(t, testConfig(), dir)
	st, err := v.StartJob([]string{"alice@ok.test", "nosuchuser@ok.test", "bad@@x"})
	if err != nil {
		t.Fatal(err)
	}
	if !testnet.Wait(10*time.Second, func() bool { s, _ := v.Job(st.ID); return s.State == JobDone }) {
		t.Fatal("job did not finish")
	}
	v.Close()
	// Simulate a crash while running: status says running, results file
	// ends in a torn line.
	st.State = JobRunning
	if err := v.jobs.writeStatus(st); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(v.jobs.resultsPath(st.ID), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(`{"index":7,"result":{"addr`)
	fh.Close()
	v2 := f.verifier(t, testConfig(), dir)
	s2, ok := v2.Job(st.ID)
	if !ok || s2.State != JobInterrupted || s2.Done != 3 || s2.Buckets["valid"] != 1 || s2.Buckets["invalid"] != 2 {
		t.Fatalf("after restart: %+v", s2)
	}
}
