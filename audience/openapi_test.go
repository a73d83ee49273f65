package audience

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDescribesEveryRoute: docs/openapi/audiences.json (OpenAPI
// 3) names exactly the routes the audience handler and the public
// confirm handler mount, method by method; every path parameter is
// declared, every operation has responses, and every $ref resolves.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi/audiences.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Parameters []struct{ Name, In string } `json:"parameters"`
			Responses  map[string]json.RawMessage  `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi/audiences.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "esp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mounted := append(Handler(s, HandlerOptions{Context: ctx}).(*routeMux).patterns, (&Confirmer{}).Handler().(*routeMux).patterns...)
	var described []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			described = append(described, strings.ToUpper(method)+" "+path)
			if len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
			for _, m := range regexp.MustCompile(`\{([a-z]+)\}`).FindAllStringSubmatch(path, -1) {
				if !slices.ContainsFunc(op.Parameters, func(p struct{ Name, In string }) bool { return p.Name == m[1] && p.In == "path" }) {
					t.Errorf("%s %s: path parameter %s not declared", method, path, m[1])
				}
			}
		}
	}
	slices.Sort(mounted)
	slices.Sort(described)
	for _, r := range mounted {
		if !slices.Contains(described, r) {
			t.Errorf("mounted route %s is not in docs/openapi/audiences.json", r)
		}
	}
	for _, r := range described {
		if !slices.Contains(mounted, r) {
			t.Errorf("docs/openapi/audiences.json describes %s, which is not mounted", r)
		}
	}
	for _, m := range regexp.MustCompile(`"\$ref": "#/components/schemas/([A-Za-z]+)"`).FindAllStringSubmatch(string(b), -1) {
		if _, ok := doc.Components.Schemas[m[1]]; !ok {
			t.Errorf("$ref to undefined schema %s", m[1])
		}
	}
	if len(mounted) < 30 {
		t.Errorf("only %d routes mounted: %v", len(mounted), mounted)
	}
}
