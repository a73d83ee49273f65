package shaping

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/mta"
)

// TestDataDriven runs the shaping cases in testdata (format: README.md,
// "Test cases"): which rule a destination matches, the permit it gets,
// and what automation does with replies. Each file starts on the shipped
// rules; a "shaping" directive replaces the shaper for the rest of the
// file. Regenerate expected output with
// go test ./policy/shaping -run TestDataDriven -rewrite (then review the diff).
func TestDataDriven(t *testing.T) {
	for _, dir := range []string{"testdata/match", "testdata/permits", "testdata/automation"} { // not testdata/fuzz
		t.Run(filepath.Base(dir), func(t *testing.T) { runShapingCases(t, dir) })
	}
}

func runShapingCases(t *testing.T, dir string) {
	datadriven.Walk(t, dir, func(t *testing.T, path string) {
		s, err := New(config.ShapingConfig{}, "petrel.test", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var dest mta.Dest
			d.MaybeScanArgs(t, "domain", &dest.Domain)
			d.MaybeScanArgs(t, "mx", &dest.MXHost)
			d.MaybeScanArgs(t, "stream", &dest.Stream)
			switch d.Cmd {
			case "shaping":
				c, err := config.Parse("test.toml", []byte(d.Input))
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				ns, err := New(c.Shaping, "petrel.test", nil, nil)
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				s = ns
				return "ok\n"
			case "match":
				r, key := s.rs.Load().match(dest)
				return fmt.Sprintf("rule=%s key=%s\n", r.cfg.Name, key)
			case "permit":
				p, err := s.AcquireConn(ctx, dest)
				if err != nil {
					return refusal(err)
				}
				defer p.Release()
				return fmt.Sprintf("egress=%s ehlo=%s max_messages=%d idle=%s tls=%s\n",
					p.Egress.Name, p.Egress.EHLO, p.MaxMessages, p.IdleTimeout, tlsName(p.TLS))
			case "message":
				if err := s.AcquireMessage(ctx, dest, "default"); err != nil {
					return refusal(err)
				}
				return "ok\n"
			case "observe":
				var code int
				var enhanced string
				d.ScanArgs(t, "code", &code)
				d.MaybeScanArgs(t, "enhanced", &enhanced)
				s.Observe(dest, "default", code, enhanced, d.Input)
				fallthrough
			case "actions":
				var b strings.Builder
				for _, a := range s.Status().Actions {
					fmt.Fprintf(&b, "%s key=%s stream=%s source=%s", a.Action, a.Key, a.Stream, a.Source)
					if a.Factor != 0 {
						fmt.Fprintf(&b, " factor=%g", a.Factor)
					}
					b.WriteString("\n")
				}
				if b.Len() == 0 {
					return "no actions\n"
				}
				return b.String()
			}
			t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
			return ""
		})
	})
}

// refusal prints a shaping refusal without its time (Until).
func refusal(err error) string {
	var pe *mta.PolicyError
	if !errors.As(err, &pe) {
		return "error: " + err.Error() + "\n"
	}
	if pe.Bounce {
		return "bounce: " + pe.Reason + "\n"
	}
	return "defer: " + pe.Reason + "\n"
}

func tlsName(m mta.TLSMode) string {
	switch m {
	case mta.TLSOpportunistic:
		return "opportunistic"
	case mta.TLSRequired:
		return "required"
	case mta.TLSDisabled:
		return "disabled"
	}
	return fmt.Sprint(int(m))
}
