package audience

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// bulkRows returns n contacts for a bulk upsert; rows 5 and n-300 are
// invalid (address, field type).
func bulkRows(n int) []map[string]any {
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"email": fmt.Sprintf("j%d@example.com", i), "fields": map[string]any{"score": i}, "tags": []string{"bulk"}}
	}
	rows[5]["email"] = "not-an-address"
	rows[n-300]["fields"] = map[string]any{"score": "lots"}
	return rows
}

// TestBulkUpsertJob: PUT .../contacts with more than 1,000 contacts is a
// 202 with a job id; the job writes them in the background and reports
// counters and row errors by index (on_duplicate skip keeps an existing
// contact as it was). Both backends.
func TestBulkUpsertJob(t *testing.T) {
	eachBackend(t, Options{BatchSize: 500}, func(t *testing.T, s *Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv := httptest.NewServer(Handler(s, HandlerOptions{Context: ctx}))
		defer srv.Close()
		c := apiClient{t, srv.URL}
		var a Audience
		c.json("POST", "/api/v1/audiences", map[string]any{"name": "news", "fields": []Field{{Name: "score", Type: Number}}}, 201, &a)
		ap := fmt.Sprintf("/api/v1/audiences/%d", a.ID)
		c.json("POST", ap+"/contacts", `{"email":"j7@example.com","fields":{"score":-1}}`, 201, nil)
		const n = 2300
		var acc struct {
			JobID int64 `json:"job_id"`
			Job   ContactJob
		}
		c.json("PUT", ap+"/contacts", map[string]any{"contacts": bulkRows(n), "on_duplicate": "skip"}, 202, &acc)
		if acc.JobID == 0 || acc.Job.Total != n {
			t.Fatalf("202 answer %+v", acc)
		}
		var j ContactJob
		deadline := time.Now().Add(60 * time.Second)
		for {
			c.json("GET", fmt.Sprintf("%s/jobs/%d", ap, acc.JobID), nil, 200, &j)
			if j.State == ImportDone || j.State == ImportFailed || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if j.State != ImportDone || j.Processed != n || j.Created != n-3 || j.Skipped != 1 || j.Failed != 2 {
			t.Fatalf("job %+v, want done with %d created, 1 skipped, 2 failed", j, n-3)
		}
		var errs struct{ Errors []ContactJobError }
		c.json("GET", fmt.Sprintf("%s/jobs/%d/errors", ap, acc.JobID), nil, 200, &errs)
		if len(errs.Errors) != 2 || errs.Errors[0].Index != 5 || errs.Errors[0].Column != "email" ||
			errs.Errors[1].Index != n-300 || errs.Errors[1].Column != "score" {
			t.Fatalf("row errors %+v", errs.Errors)
		}
		c.json("GET", fmt.Sprintf("%s/jobs/%d/errors?after=5", ap, acc.JobID), nil, 200, &errs)
		if len(errs.Errors) != 1 {
			t.Fatalf("errors after 5: %+v", errs.Errors)
		}
		if k, err := s.Count(ctx, a.ID, `"bulk" in tags`); err != nil || k != n-3 {
			t.Fatalf("contacts tagged bulk: %d %v", k, err)
		}
		if k, err := s.Count(ctx, a.ID, `score == -1.0`); err != nil || k != 1 {
			t.Fatalf("skipped duplicate changed: %d %v", k, err)
		}
		apiError(t, c.json("GET", fmt.Sprintf("%s/jobs/%d", ap, acc.JobID+100), nil, 404, nil), "not_found")
		apiError(t, c.json("GET", fmt.Sprintf("/api/v1/audiences/%d/jobs/%d", a.ID+1, acc.JobID), nil, 404, nil), "not_found")
		apiError(t, c.json("PUT", ap+"/contacts", map[string]any{"contacts": bulkRows(1200), "on_duplicate": "merge"}, 400, nil), "invalid_import")
	})
}

// TestContactJobResumes: a job stopped after its first batch (the
// process ending) resumes from its committed position and ends exactly
// as an uninterrupted run; a job that cannot run ends failed with the
// reason, never silently lost. Both backends.
func TestContactJobResumes(t *testing.T) {
	eachBackend(t, Options{BatchSize: 400}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, err := s.CreateAudience(ctx, Audience{Name: "news", Fields: []Field{{Name: "score", Type: Number}}})
		if err != nil {
			t.Fatal(err)
		}
		var ins []ContactInput
		for _, r := range bulkRows(1500) {
			ins = append(ins, ContactInput{Email: r["email"].(string), Tags: []string{"bulk"}, Fields: r["fields"].(map[string]any)})
		}
		j, err := s.CreateContactJob(ctx, a.ID, ins, DupUpdate, TagsAdd)
		if err != nil {
			t.Fatal(err)
		}
		stop, cancel := context.WithCancel(ctx)
		s.opts.afterBatch = cancel
		if err := s.RunContactJob(stop, j.ID); err == nil {
			t.Fatal("stopped run returned nil")
		}
		s.opts.afterBatch = nil
		mid, _ := s.ContactJob(ctx, a.ID, j.ID)
		if mid.State != ImportRunning || mid.Processed != 400 {
			t.Fatalf("after the stop: %+v, want running at 400", mid)
		}
		if err := s.RunContactJob(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		end, _ := s.ContactJob(ctx, a.ID, j.ID)
		if end.State != ImportDone || end.Processed != 1500 || end.Created != 1498 || end.Failed != 2 {
			t.Fatalf("resumed job %+v", end)
		}
		if k, _ := s.Count(ctx, a.ID, `"bulk" in tags`); k != 1498 {
			t.Fatalf("%d contacts, want 1498", k)
		}
		errs, _ := s.ContactJobErrors(ctx, j.ID, -1, 0)
		if len(errs) != 2 {
			t.Fatalf("errors %+v", errs)
		}

		// A job whose stored contacts cannot be read fails with the reason.
		bad, err := s.CreateContactJob(ctx, a.ID, ins[:10], DupUpdate, TagsAdd)
		if err != nil {
			t.Fatal(err)
		}
		val := "?"
		if s.d == sqlite {
			val = "jsonb(?)"
		}
		if _, err := s.exec(ctx, s.db, `UPDATE contact_jobs SET payload = `+val+` WHERE id = ?`, `{"not":"a list"}`, bad.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RunContactJob(ctx, bad.ID); err == nil {
			t.Fatal("unreadable job ran")
		}
		f, _ := s.ContactJob(ctx, a.ID, bad.ID)
		if f.State != ImportFailed || !strings.Contains(f.Error, "payload") {
			t.Fatalf("unreadable job %+v, want failed naming the payload", f)
		}
		if p, _ := s.PendingContactJobs(ctx); len(p) != 0 {
			t.Fatalf("pending jobs %v after both ended", p)
		}
	})
}
