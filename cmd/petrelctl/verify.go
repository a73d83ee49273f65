package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// verifyCommand is "petrelctl verify": one address, or a CSV file as a
// bulk job with a progress bar on stderr and a summary.
func verifyCommand() command {
	return command{usage: "ADDRESS [--quick] | --file list.csv [--out results.csv] [--bucket valid|risky|invalid]", run: runVerify}
}

// verifyResult is the part of verify.Result the CLI prints.
type verifyResult struct {
	Address    string          `json:"address"`
	Normalized string          `json:"normalized"`
	Verdict    string          `json:"verdict"`
	Reasons    []string        `json:"reasons"`
	Flags      map[string]bool `json:"flags"`
	Suggestion string          `json:"suggestion"`
	Stages     struct {
		SMTP struct {
			Status   string `json:"status"`
			Host     string `json:"host"`
			Code     int    `json:"code"`
			Enhanced string `json:"enhanced"`
			Message  string `json:"message"`
		} `json:"smtp"`
	} `json:"stages"`
}

// verifyJob is the part of verify.JobStatus the CLI prints.
type verifyJob struct {
	ID        string         `json:"id"`
	State     string         `json:"state"`
	Total     int            `json:"total"`
	Done      int            `json:"done"`
	Verdicts  map[string]int `json:"verdicts"`
	Buckets   map[string]int `json:"buckets"`
	PerSecond float64        `json:"per_second"`
}

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	file := fs.String("file", "", "CSV list to verify as a bulk job (column email/address, else the first)")
	out := fs.String("out", "", "write the job's results as CSV to this file")
	bucket := fs.String("bucket", "", "with --out: only valid, risky or invalid")
	quick := fs.Bool("quick", false, "single address: syntax, domain and MX only (no SMTP probe)")
	poll := fs.Duration("poll", 500*time.Millisecond, "progress poll interval")
	// Flags may come before or after the address.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *file == "" {
		if len(pos) != 1 {
			return errUsage
		}
		return verifyOne(ctx, e, pos[0], *quick)
	}
	if len(pos) != 0 {
		return errUsage
	}
	return verifyFile(ctx, e, *file, *out, *bucket, *poll)
}

func verifyOne(ctx context.Context, e *env, addr string, quick bool) error {
	path := "/api/v1/verify?address=" + url.QueryEscape(addr)
	if quick {
		path += "&quick=1"
	}
	if e.JSON {
		var raw json.RawMessage
		if err := e.call(ctx, http.MethodGet, path, nil, &raw); err != nil {
			return err
		}
		_, err := e.Out.Write(append(raw, '\n'))
		return err
	}
	var r verifyResult
	if err := e.call(ctx, http.MethodGet, path, nil, &r); err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "%s: %s\n", r.Address, strings.ToUpper(r.Verdict))
	fmt.Fprintf(e.Out, "  reasons:    %s\n", strings.Join(r.Reasons, ", "))
	if r.Normalized != "" && r.Normalized != r.Address {
		fmt.Fprintf(e.Out, "  normalized: %s\n", r.Normalized)
	}
	var flags []string
	for _, f := range []string{"disposable", "role", "free_provider", "catch_all", "full_inbox", "disabled"} {
		if r.Flags[f] {
			flags = append(flags, f)
		}
	}
	if len(flags) > 0 {
		fmt.Fprintf(e.Out, "  flags:      %s\n", strings.Join(flags, ", "))
	}
	if r.Suggestion != "" {
		fmt.Fprintf(e.Out, "  did you mean: %s\n", r.Suggestion)
	}
	if s := r.Stages.SMTP; s.Code != 0 {
		fmt.Fprintf(e.Out, "  smtp:       %s %d %s %s\n", s.Host, s.Code, s.Enhanced, s.Message)
	}
	return nil
}

func verifyFile(ctx context.Context, e *env, file, out, bucket string, poll time.Duration) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	resp, err := e.rawRequest(ctx, http.MethodPost, "/api/v1/verify/jobs", "text/csv", f)
	if err != nil {
		return err
	}
	var job verifyJob
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for job.State == "running" {
		progressBar(e.Err, job)
		select {
		case <-ctx.Done():
			fmt.Fprintln(e.Err)
			return fmt.Errorf("stopped waiting; job %s keeps running: %w", job.ID, ctx.Err())
		case <-time.After(poll):
		}
		if err := e.call(ctx, http.MethodGet, "/api/v1/verify/jobs/"+job.ID, nil, &job); err != nil {
			return err
		}
	}
	progressBar(e.Err, job)
	fmt.Fprintln(e.Err)
	if out != "" {
		if err := downloadResults(ctx, e, job.ID, bucket, out); err != nil {
			return err
		}
	}
	if e.JSON {
		return e.printJSON(job)
	}
	fmt.Fprintf(e.Out, "job %s: %s, %d of %d addresses (%.0f/s)\n", job.ID, job.State, job.Done, job.Total, job.PerSecond)
	for _, b := range []string{"valid", "risky", "invalid"} {
		fmt.Fprintf(e.Out, "  %-8s %d\n", b, job.Buckets[b])
	}
	for _, v := range []string{"deliverable", "risky", "unknown", "undeliverable"} {
		fmt.Fprintf(e.Out, "    %-14s %d\n", v, job.Verdicts[v])
	}
	if out != "" {
		fmt.Fprintf(e.Out, "results written to %s\n", out)
	}
	return nil
}

func downloadResults(ctx context.Context, e *env, id, bucket, out string) error {
	path := "/api/v1/verify/jobs/" + id + "/results?format=csv"
	if bucket != "" {
		path += "&bucket=" + url.QueryEscape(bucket)
	}
	resp, err := e.rawRequest(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("verify: results: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("verify: results: %w", err)
	}
	return nil
}

// progressBar redraws one line on w: bar, percentage, counts, rate.
func progressBar(w io.Writer, j verifyJob) {
	const width = 30
	frac := 0.0
	if j.Total > 0 {
		frac = float64(j.Done) / float64(j.Total)
	}
	n := int(frac * width)
	fmt.Fprintf(w, "\r[%s%s] %3.0f%% %d/%d %.0f/s", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, j.Done, j.Total, j.PerSecond)
}
