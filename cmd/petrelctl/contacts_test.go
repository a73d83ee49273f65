package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/audience"
)

// audienceServer runs the real audience API on an embedded database.
func audienceServer(t *testing.T) (string, *audience.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	s, err := audience.Open(ctx, filepath.Join(dir, "esp.db"), audience.Options{ImportDir: filepath.Join(dir, "imports"), BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(audience.Handler(s, audience.HandlerOptions{Context: ctx}))
	t.Cleanup(srv.Close)
	return srv.URL, s
}

func TestContactsCommands(t *testing.T) {
	url, s := audienceServer(t)
	out, errs, code := ctl(t, url, "audiences", "create", "news", "--field", "city:text", "--field", "plan:enum:free|pro")
	if code != 0 || !strings.Contains(out, "audience 1 news (2 fields)") {
		t.Fatalf("create: %d %q %q", code, out, errs)
	}
	file := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(file, []byte("email,Town,plan,tags\na@example.com,Oslo,pro,x;y\nbad-address,Oslo,free,\nb@example.com,Lima,gold,\nc@example.com,Lima,free,\n"), 0o600)
	out, errs, code = ctl(t, url, "contacts", "import", file, "--audience", "news", "--map", "Town=city", "--add-tag", "csv", "--consent-purpose", "marketing", "--poll", "10ms")
	if code != 0 || !strings.Contains(out, "4 rows read, 2 created, 0 updated, 0 skipped, 2 failed") || !strings.Contains(errs, "100%") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	out, _, code = ctl(t, url, "imports", "show", "1", "--errors")
	if code != 0 || !strings.HasPrefix(out, "line,column,reason\n3,email,") || !strings.Contains(out, "\n4,plan,") {
		t.Fatalf("errors: %d %q", code, out)
	}
	// Same file again, skipping duplicates: nothing created or updated.
	out, _, code = ctl(t, url, "-json", "contacts", "import", file, "--audience", "1", "--on-duplicate", "skip", "--map", "Town=city", "--poll", "10ms")
	var job importJSON
	if code != 0 || json.Unmarshal([]byte(out), &job) != nil || job.Skipped != 2 || job.Created != 0 {
		t.Fatalf("second import: %d %q", code, out)
	}
	c, err := s.ContactByEmail(context.Background(), 1, "a@example.com")
	if err != nil || c.Fields["city"] != "Oslo" || strings.Join(c.Tags, ",") != "csv,x,y" {
		t.Fatalf("contact %+v %v", c, err)
	}
	if ok, _ := s.HasConsent(context.Background(), 1, c.ID, "marketing"); !ok {
		t.Fatal("no consent grant from the import")
	}
	out, _, code = ctl(t, url, "segments", "count", "--audience", "news", `"x" in tags || city == "Lima"`)
	if code != 0 || strings.TrimSpace(out) != "2" {
		t.Fatalf("count: %d %q", code, out)
	}
	out, _, code = ctl(t, url, "contacts", "list", "--audience", "news", "--where", `plan == "free"`)
	if code != 0 || !strings.Contains(out, "c@example.com\tactive") || strings.Contains(out, "a@example.com") {
		t.Fatalf("list: %d %q", code, out)
	}
	_, errs, code = ctl(t, url, "segments", "count", "--audience", "news", `plan ==`)
	if code != 1 || !strings.Contains(errs, "400 invalid_expression: 1:8") {
		t.Fatalf("bad expression: %d %q", code, errs)
	}
	_, errs, code = ctl(t, url, "contacts", "import", file, "--audience", "nope")
	if code != 1 || !strings.Contains(errs, `no audience named "nope"`) {
		t.Fatalf("unknown audience: %d %q", code, errs)
	}
	out, _, code = ctl(t, url, "audiences", "list")
	if code != 0 || out != "1\tnews\tsingle opt-in\n" {
		t.Fatalf("list: %d %q", code, out)
	}
}
