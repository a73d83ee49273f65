// Package archtest checks the import layering that ARCHITECTURE.md
// writes down ("Allowed imports"): no stage imports a later stage, policy
// imports no stage, the ESP layer sees the MTA only through ingest and
// events. It has no code of its own, only this test.
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/petrel-mta/petrel/"

// allowed lists, for each component, the components it may import
// (besides itself). A component is a top-level directory, except that
// each internal/* package is its own component. Keep this
// table and ARCHITECTURE.md's in agreement.
var allowed = map[string][]string{
	// layer 0: vocabulary
	"mta":               {},
	"dns":               {},
	"config":            {},
	"internal/httpapi":  {"config"},
	"internal/testnet":  {},
	"internal/archtest": {},
	// layer 1: policy (asked, never asks)
	"policy": {"mta", "dns", "config", "internal/httpapi"},
	// layer 2: the spool
	"queue": {"mta", "dns", "config"},
	// layer 3: the one entry point
	"ingest": {"mta", "dns", "config", "internal/httpapi", "policy"},
	// layer 4: stages after the queue
	"delivery": {"mta", "dns", "config", "queue", "policy"},
	"bounce":   {"mta", "dns", "config", "queue", "ingest", "internal/httpapi"},
	"events":   {"mta", "dns", "config", "queue", "bounce", "policy", "internal/httpapi"},
	"verify":   {"mta", "dns", "config", "bounce", "policy", "internal/httpapi"},
	// reputation: the periodic blocklist checker (asks DNS, appends to
	// the event log, pauses streams through policy/shaping).
	"reputation": {"mta", "dns", "config", "queue", "policy", "internal/httpapi"},
	// layer 5: ESP
	"audience": {"mta", "dns", "config", "internal/httpapi", "policy", "ingest", "events"},
	"tracking": {"mta", "dns", "config", "internal/httpapi", "policy", "ingest", "events", "audience"},
	"campaign": {"mta", "dns", "config", "internal/httpapi", "policy", "ingest", "events", "audience", "tracking"},
	// campaign/flow (automation flows) builds on campaign's templates and messages.
	"campaign/flow": {"mta", "dns", "config", "internal/httpapi", "policy", "ingest", "events", "audience", "tracking", "campaign"},
	"account":       {"mta", "dns", "config", "internal/httpapi"},
	// layer 6: the HTTP surface
	"admin": {"*"},
	// layer 7: wiring (every cmd/* component; see component)
	"cmd": {"*"},
	// bench drives petreld as a process: no production package.
	"bench": {},
	// dist holds deployment files; its tests drive the binaries.
	"dist": {},
}

// component names the layer table's entry for a package import path:
// the top-level directory, or internal/<name> for internal packages.
func component(path string) string {
	rel := strings.TrimPrefix(path, module)
	parts := strings.Split(rel, "/")
	switch {
	case parts[0] == "internal" && len(parts) > 1:
		return parts[0] + "/" + parts[1]
	case parts[0] == "verify" && len(parts) > 1 && parts[1] == "compare":
		return "cmd" // a development tool: wiring, like cmd
	case parts[0] == "campaign" && len(parts) > 1 && parts[1] == "flow":
		return "campaign/flow"
	case parts[0] == "bench" && len(parts) > 1 && parts[1] == "cmd":
		return "bench"
	}
	return parts[0]
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// TestImportLayering fails on every import of a Petrel package that the
// layer table does not allow, and on a package missing from the table.
func TestImportLayering(t *testing.T) {
	for _, p := range listPackages(t) {
		from := component(p.ImportPath)
		ok, known := allowed[from]
		if !known && strings.HasPrefix(from, "internal/") {
			// internal helpers are layer 0: they may use only layer 0.
			ok, known = []string{"mta", "dns", "config"}, true
		}
		if !known {
			t.Errorf("%s: component %q is not in the layer table (add it here and to ARCHITECTURE.md)", p.ImportPath, from)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := component(imp)
			// Layer-0 internal helpers may be used by every package.
			internalHelper := strings.HasPrefix(to, "internal/") && to != "internal/testnet" && !strings.HasPrefix(from, "internal/")
			if to == from || internalHelper || slices.Contains(ok, "*") || slices.Contains(ok, to) {
				continue
			}
			t.Errorf("%s imports %s: %s may not import %s (ARCHITECTURE.md, Allowed imports)", p.ImportPath, imp, from, to)
		}
	}
}

// TestComponent pins the mapping from import paths to table entries.
func TestComponent(t *testing.T) {
	tests := []struct{ path, want string }{
		{module + "policy/shaping", "policy"},
		{module + "internal/httpapi", "internal/httpapi"},
		{module + "cmd/petreld", "cmd"},
		{module + "verify/compare", "cmd"},
		{module + "verify", "verify"},
		{module + "bench/cmd/petrel-bench", "bench"},
		{module + "queue", "queue"},
	}
	for _, tc := range tests {
		if got := component(tc.path); got != tc.want {
			t.Errorf("component(%s) = %s, want %s", tc.path, got, tc.want)
		}
	}
}
