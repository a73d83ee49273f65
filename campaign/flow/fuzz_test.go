package flow

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFlow: flow definitions are untrusted bytes (TOML files, JSON
// API bodies). Parsing and the shape check never panic, and a flow that
// passes the check round-trips through JSON and passes it again.
func FuzzParseFlow(f *testing.F) {
	for _, name := range []string{"welcome.toml", "abandoned-cart.toml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "examples", "flows", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"id":"x","trigger":{"type":"event","event":"e"},"steps":[{"id":"a","type":"wait","event":"b","timeout":"1d","on_event":"a"}]}`))
	f.Add([]byte("id = \"l\"\n[trigger]\ntype = \"joined\"\n[[steps]]\nid = \"a\"\ntype = \"condition\"\nif = { has_tag = \"x\" }\nthen = \"a\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fl Flow
		if err := strictJSON(data, &fl); err != nil {
			var err2 error
			if fl, err2 = ParseTOML(data); err2 != nil {
				return
			}
		}
		if err := fl.checkShape(); err != nil {
			return
		}
		raw, err := json.Marshal(fl)
		if err != nil {
			t.Fatalf("marshal a valid flow: %v", err)
		}
		var back Flow
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("round trip: %v\n%s", err, raw)
		}
		if err := back.checkShape(); err != nil {
			t.Fatalf("valid flow invalid after a JSON round trip: %v\n%s", err, raw)
		}
		// Walking the steps terminates (no cycle passed the check).
		for i := range back.Steps {
			for j, n := i, 0; j >= 0; n++ {
				if n > len(back.Steps) {
					t.Fatalf("step walk from %d loops", i)
				}
				if back.Steps[j].Type == StepExit {
					break
				}
				j = back.after(j, "")
			}
		}
	})
}
