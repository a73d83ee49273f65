package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestListCleaningThroughDaemon: petreld's list cleaning runs an
// audience through its verifier (the real SMTP probe against a loopback
// MX host that rejects some mailboxes 550 5.1.1): counts, verdicts and
// tags come back over the API.
func TestListCleaningThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.mx(2, "example.test", testnet.MXScript{OnRcpt: func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "gone") {
			return testnet.Reply(550, "5.1.1", "no such user")
		}
		return nil
	}})
	e.start()
	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "news"}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
	ids := map[string]int64{}
	for _, addr := range []string{"ann@example.test", "gone1@example.test", "gone2@example.test", "x@nowhere.test"} {
		var c struct{ ID int64 }
		if code, err := e.api("POST", ap+"/contacts", map[string]any{"email": addr}, &c); err != nil || code != 201 {
			t.Fatalf("add %s: %d %v", addr, code, err)
		}
		ids[addr] = c.ID
	}
	var j struct {
		ID                                      int64
		State                                   string
		Checked, Valid, Risky, Invalid, Unknown int
	}
	if code, err := e.api("POST", ap+"/cleanings", map[string]any{}, &j); err != nil || code != 202 {
		t.Fatalf("start cleaning: %d %v", code, err)
	}
	waitFor(t, 60*time.Second, "cleaning done", func() bool {
		e.api("GET", fmt.Sprintf("%s/cleanings/%d", ap, j.ID), nil, &j)
		return j.State == "done" || j.State == "failed"
	})
	// The MX rejects only gone*: a random probe address is accepted, so
	// ann is risky (catch-all) or valid; gone1, gone2 and the domain
	// without DNS records are invalid.
	if j.State != "done" || j.Checked != 4 || j.Invalid != 3 || j.Valid+j.Risky != 1 {
		t.Fatalf("cleaning job %+v", j)
	}
	for addr, id := range ids {
		var v struct{ Verdict string }
		if code, _ := e.api("GET", fmt.Sprintf("%s/contacts/%d/verification", ap, id), nil, &v); code != 200 {
			t.Fatalf("verification of %s: %d", addr, code)
		}
		var c struct{ Tags []string }
		e.api("GET", fmt.Sprintf("%s/contacts/%d", ap, id), nil, &c)
		if bad := addr != "ann@example.test"; bad != (v.Verdict == "invalid") || bad != slices.Contains(c.Tags, "verify:invalid") {
			t.Errorf("%s: verdict %s, tags %v", addr, v.Verdict, c.Tags)
		}
	}
}
