package main

import (
	"fmt"
	"testing"
	"time"
)

// TestBulkUpsertJobSurvivesKill: a bulk upsert of 20,000 contacts is
// answered 202 with a job; petreld is killed (SIGKILL) right after the
// answer; after the restart the job resumes by itself and ends with
// every contact written once and the invalid row reported.
func TestBulkUpsertJobSurvivesKill(t *testing.T) {
	e := newEnv(t)
	e.extra = "[esp]\nimport_batch = 200\n"
	e.start()
	var a struct{ ID int64 }
	if code, err := e.api("POST", "/api/v1/audiences", map[string]any{"name": "bulk"}, &a); err != nil || code != 201 {
		t.Fatalf("create audience: %d %v", code, err)
	}
	ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
	const n = 20000
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"email": fmt.Sprintf("k%d@example.test", i), "tags": []string{"bulk"}}
	}
	rows[123]["email"] = "broken"
	var acc struct {
		JobID int64 `json:"job_id"`
	}
	if code, err := e.api("PUT", ap+"/contacts", map[string]any{"contacts": rows}, &acc); err != nil || code != 202 || acc.JobID == 0 {
		t.Fatalf("bulk upsert: %d %v %+v", code, err, acc)
	}
	e.kill()
	e.start()
	var j struct {
		State                      string
		Processed, Created, Failed int64
	}
	e.api("GET", fmt.Sprintf("%s/jobs/%d", ap, acc.JobID), nil, &j)
	t.Logf("after the restart: %s at %d of %d", j.State, j.Processed, n) // usually part-way: the kill landed mid-job
	waitFor(t, 120*time.Second, "the job done after the restart", func() bool {
		e.api("GET", fmt.Sprintf("%s/jobs/%d", ap, acc.JobID), nil, &j)
		return j.State == "done" || j.State == "failed"
	})
	if j.State != "done" || j.Processed != n || j.Created != n-1 || j.Failed != 1 {
		t.Fatalf("job %+v, want done: %d created, 1 failed", j, n-1)
	}
	var c struct{ Count int }
	if code, err := e.api("POST", ap+"/segments/count", map[string]any{"expression": `"bulk" in tags`}, &c); err != nil || code != 200 || c.Count != n-1 {
		t.Fatalf("contacts after the job: %d (%d %v), want %d", c.Count, code, err, n-1)
	}
	var errs struct {
		Errors []struct {
			Index  int
			Column string
		}
	}
	if code, _ := e.api("GET", fmt.Sprintf("%s/jobs/%d/errors", ap, acc.JobID), nil, &errs); code != 200 || len(errs.Errors) != 1 || errs.Errors[0].Index != 123 {
		t.Fatalf("job errors %d %+v", code, errs)
	}
}
