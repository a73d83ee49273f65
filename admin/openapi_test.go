package admin

import (
	"net/http"
	"os"
	"regexp"
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
	mounted := compareRoutes(t, "docs/openapi.yaml", described, r, func(path string) bool {
		return strings.HasPrefix(path, "/api/v1/campaigns") || strings.HasPrefix(path, "/api/v1/templates") || path == "/api/v1/sending-keys"
	})
	if len(mounted) < 14 {
		t.Fatalf("only %d campaign/template routes mounted", len(mounted))
	}
}

// TestOpenAPIDescribesTrackingRoutes: docs/openapi/tracking.json names
// exactly the mounted /api/v1/tracking routes (settings and domains),
// each behind the key, each path parameter declared, every $ref
// resolving.
func TestOpenAPIDescribesTrackingRoutes(t *testing.T) {
	raw, err := os.ReadFile("../docs/openapi/tracking.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string `yaml:"openapi"`
		Paths   map[string]map[string]struct {
			Parameters []struct{ Name, In string } `yaml:"parameters"`
			Responses  map[string]yaml.Node        `yaml:"responses"`
		} `yaml:"paths"`
		Components struct {
			Schemas map[string]yaml.Node `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil { // JSON is YAML
		t.Fatalf("tracking.json: %v", err)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			described[strings.ToUpper(method)+" "+path] = true
			if len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
			for _, seg := range strings.Split(path, "/") {
				if !strings.HasPrefix(seg, "{") {
					continue
				}
				name := strings.Trim(seg, "{}")
				found := false
				for _, p := range op.Parameters {
					found = found || p.Name == name && p.In == "path"
				}
				if !found {
					t.Errorf("%s %s: path parameter %s not declared", method, path, name)
				}
			}
		}
	}
	for _, ref := range regexpRefs.FindAllStringSubmatch(string(raw), -1) {
		if _, ok := doc.Components.Schemas[ref[1]]; !ok {
			t.Errorf("$ref %s does not resolve", ref[0])
		}
	}
	r := New(Options{TrackingSettings: http.NotFoundHandler(), TrackingDomains: http.NotFoundHandler()})
	mounted := compareRoutes(t, "docs/openapi/tracking.json", described, r, func(path string) bool {
		return strings.HasPrefix(path, "/api/v1/tracking/")
	})
	if len(mounted) < 10 {
		t.Fatalf("only %d tracking routes mounted", len(mounted))
	}
}

var regexpRefs = regexp.MustCompile(`"#/components/schemas/([A-Za-z]+)"`)

// compareRoutes checks that the routes of r whose path keep selects are
// private and described (doc names the document), and that every
// described operation is mounted; it returns the selected routes.
func compareRoutes(t *testing.T, doc string, described map[string]bool, r *Router, keep func(path string) bool) map[string]bool {
	t.Helper()
	mounted := map[string]bool{}
	for _, rt := range r.Routes() {
		_, path, _ := strings.Cut(rt.Pattern, " ")
		if !keep(path) {
			continue
		}
		if rt.Access != Private {
			t.Errorf("%s is not behind the key", rt.Pattern)
		}
		mounted[rt.Pattern] = true
		if !described[rt.Pattern] {
			t.Errorf("mounted route %s is not in %s", rt.Pattern, doc)
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
		t.Errorf("%s describes routes that are not mounted: %v", doc, extra)
	}
	return mounted
}
