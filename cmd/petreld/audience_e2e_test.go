package main

import (
	"fmt"
	"testing"
	"time"
)

// TestAudiencesThroughDaemon: petreld on its embedded ESP database
// (SQLite in data_dir) serves the audience API behind the key: create an
// audience with a custom field, add contacts, count a CEL segment; the
// data survives a restart; a suppression turns into the contact's status.
func TestAudiencesThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.start()
	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "news", "fields": []map[string]any{{"name": "city", "type": "text"}}}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
	var first struct{ ID int64 }
	for i, city := range []string{"Taipei", "Oslo", "Taipei"} {
		body := map[string]any{"email": fmt.Sprintf("u%d@example.test", i), "fields": map[string]any{"city": city}, "tags": []string{"vip"}}
		var c struct{ ID int64 }
		if code, err := e.api("POST", ap+"/contacts", body, &c); err != nil || code != 201 {
			t.Fatalf("add contact: %d %v", code, err)
		}
		if i == 0 {
			first = c
		}
	}
	count := func() int {
		var c struct{ Count int }
		if code, err := e.api("POST", ap+"/segments/count", map[string]any{"expression": `city == "Taipei" && "vip" in tags`}, &c); err != nil || code != 200 {
			t.Fatalf("segment count: %d %v", code, err)
		}
		return c.Count
	}
	if n := count(); n != 2 {
		t.Fatalf("segment count %d, want 2", n)
	}
	var bad struct {
		Error struct{ Code, Message string }
	}
	if code, _ := e.api("POST", ap+"/segments/count", map[string]any{"expression": `city == `}, &bad); code != 400 || bad.Error.Message == "" {
		t.Fatalf("bad expression: %d %+v", code, bad)
	}
	// A marketing unsubscribe in the suppression list makes the contact
	// unsubscribed (the ESP follows the event log).
	if code, err := e.api("POST", "/api/v1/suppressions", map[string]string{"address": "u0@example.test", "stream": "marketing", "reason": "unsubscribe"}, nil); err != nil || code != 201 {
		t.Fatalf("suppress: %d %v", code, err)
	}
	waitFor(t, 15*time.Second, "contact status unsubscribed", func() bool {
		var c struct{ Status string }
		e.api("GET", fmt.Sprintf("%s/contacts/%d", ap, first.ID), nil, &c)
		return c.Status == "unsubscribed"
	})
	e.kill()
	e.start()
	if n := count(); n != 2 {
		t.Fatalf("after kill -9 and restart: segment count %d, want 2", n)
	}
}
