package testnet

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run in CI (CI=true, as .ci/run is run).
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips t for a missing prerequisite, except in CI, where
// .ci/run installs every prerequisite and a skip would hide a test that
// never ran: there t fails instead.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: a skipped test is a failure)", msg)
	}
	t.Skip(msg)
}

// SkipIfShort skips a long test in -short mode, except in CI, where every
// test runs whatever the flags.
func SkipIfShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() && !CI() {
		t.Skip(why + " (skipped in -short)")
	}
}
