package admin

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPIDescribesCampaignRoutes: docs/openapi.yaml describes every
// mounted campaign and template route (method and path), and nothing
// that is not mounted.
func TestOpenAPIDescribesCampaignRoutes(t *testing.T) {
	raw, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			described[strings.ToUpper(method)+" "+path] = true
		}
	}
	r := New(Options{Campaigns: http.NotFoundHandler(), Templates: http.NotFoundHandler()})
	mounted := map[string]bool{}
	for _, rt := range r.Routes() {
		_, path, _ := strings.Cut(rt.Pattern, " ")
		if !strings.HasPrefix(path, "/api/v1/campaigns") && !strings.HasPrefix(path, "/api/v1/templates") {
			continue
		}
		if rt.Access != Private {
			t.Errorf("%s is not behind the key", rt.Pattern)
		}
		mounted[rt.Pattern] = true
		if !described[rt.Pattern] {
			t.Errorf("mounted route %s is not in docs/openapi.yaml", rt.Pattern)
		}
	}
	var extra []string
	for op := range described {
		if !mounted[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("docs/openapi.yaml describes routes that are not mounted: %v", extra)
	}
	if len(mounted) < 14 {
		t.Fatalf("only %d campaign/template routes mounted", len(mounted))
	}
}
