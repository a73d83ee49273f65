package campaign

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/ingest"
)

// TestTemplatesVersionsAndRender: saving makes versions (a version never
// changes), an undeclared variable is refused at save time with its
// position, rendering uses the latest version and caches per version,
// and an unknown call name wraps ingest.ErrUnknownTemplate.
func TestTemplatesVersionsAndRender(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t, filepath.Join(t.TempDir(), "esp.db"))
	defer db.Close()
	ts, err := NewTemplates(ctx, db, false)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := ts.Save(ctx, Template{CallName: "order-shipped", Name: "Shipped", Content: Content{Subject: "Order %order_id% shipped",
		HTML: `<p>Hi %name|there%, order <b>%order_id%</b></p><script>x()</script>`}, Variables: []string{"order_id", "name"}})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.Type != "transactional" || len(v1.Warnings) != 1 {
		t.Fatalf("v1 %+v", v1)
	}
	_, err = ts.Save(ctx, Template{CallName: "order-shipped", Content: Content{Subject: "x", Text: "line\n%tracking_url%"}, Variables: []string{"order_id"}})
	var se *SyntaxError
	if !errors.As(err, &se) || se.Pos.String() != "2:1" {
		t.Fatalf("undeclared variable: %v", err)
	}
	v2, err := ts.Save(ctx, Template{CallName: "order-shipped", Content: Content{Subject: "Order %order_id% is on its way", Text: "Track: %url%"},
		Variables: []string{"order_id", "url"}})
	if err != nil || v2.Version != 2 {
		t.Fatalf("v2 %+v %v", v2, err)
	}
	subject, html, text, typ, err := ts.RenderTemplate(ctx, "order-shipped", map[string]string{"order_id": "A<1>", "url": "https://t.test/1"})
	if err != nil || subject != "Order A<1> is on its way" || html != "" || text != "Track: https://t.test/1" || typ != "transactional" {
		t.Fatalf("render latest: %q %q %q %q %v", subject, html, text, typ, err)
	}
	old, err := ts.Get(ctx, "order-shipped", 1)
	if err != nil || old.Subject != "Order %order_id% shipped" {
		t.Fatalf("version 1 changed: %+v %v", old, err)
	}
	r, msg, err := ts.Preview(ctx, "order-shipped", 1, map[string]string{"order_id": "A<1>"})
	if err != nil || !strings.Contains(r.HTML, "<b>A&lt;1&gt;</b>") || !strings.Contains(r.HTML, "Hi there") || !strings.Contains(string(msg), "multipart/alternative") {
		t.Fatalf("preview v1: %+v %v", r, err)
	}
	vs, err := ts.Versions(ctx, "order-shipped")
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions %d %v", len(vs), err)
	}
	if _, _, _, _, err := ts.RenderTemplate(ctx, "nope", nil); !errors.Is(err, ingest.ErrUnknownTemplate) {
		t.Fatalf("unknown: %v", err)
	}
	for _, bad := range []Template{{CallName: "Bad Name", Content: Content{Subject: "s", Text: "x"}}, {CallName: "ok", Type: "bulk", Content: Content{Subject: "s", Text: "x"}}} {
		if _, err := ts.Save(ctx, bad); !errors.As(err, new(*invalidError)) {
			t.Errorf("Save(%+v) = %v, want invalid", bad, err)
		}
	}
}
