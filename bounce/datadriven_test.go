package bounce

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the classifier cases in testdata/classify and
// testdata/parse (format: README.md, "Test cases"). Each file starts on
// the default rules; a "rules" directive lays an operator rules file over
// them for the directives after it. Regenerate expected output with
// go test ./bounce -run TestDataDriven -rewrite (then review the diff).
func TestDataDriven(t *testing.T) {
	for _, dir := range []string{"testdata/classify", "testdata/parse"} {
		datadriven.Walk(t, dir, func(t *testing.T, path string) {
			rules := DefaultRules()
			datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
				switch d.Cmd {
				case "rules":
					p := filepath.Join(t.TempDir(), "rules.toml")
					if err := os.WriteFile(p, []byte(d.Input), 0o600); err != nil {
						t.Fatal(err)
					}
					r, err := LoadRules(p)
					if err != nil {
						return "error: " + strings.ReplaceAll(err.Error(), p, "rules.toml") + "\n"
					}
					rules = r
					return "ok\n"
				case "classify":
					var code int
					var enhanced string
					d.MaybeScanArgs(t, "code", &code)
					d.MaybeScanArgs(t, "enhanced", &enhanced)
					c := rules.Classify(code, enhanced, d.Input)
					return fmt.Sprintf("reason=%s status=%s hard=%t\n", c.Reason, c.Status, c.Hard)
				case "parse":
					rep, err := rules.Parse([]byte(d.Input))
					if err != nil {
						return "error: " + err.Error() + "\n"
					}
					var b strings.Builder
					fmt.Fprintf(&b, "kind=%s\n", rep.Kind)
					for _, x := range rep.Bounces {
						fmt.Fprintf(&b, "%s reason=%s status=%s hard=%t\n", strings.ToLower(x.Recipient), x.Reason, x.Status, x.Hard)
					}
					return b.String()
				}
				t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
				return ""
			})
		})
	}
}
