package verify

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Job states.
const (
	JobRunning     = "running"
	JobDone        = "done"
	JobInterrupted = "interrupted" // the daemon stopped while it ran
)

// JobStatus is a bulk job's progress and summary (GET
// /api/v1/verify/jobs/{id}).
type JobStatus struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Total int    `json:"total"`
	Done  int    `json:"done"`
	// Verdicts counts finished addresses per verdict.
	Verdicts map[Verdict]int `json:"verdicts"`
	// Buckets counts finished addresses per bucket: valid, risky, invalid.
	Buckets  map[string]int `json:"buckets"`
	Created  time.Time      `json:"created"`
	Finished *time.Time     `json:"finished,omitempty"`
	// PerSecond is finished addresses per second of run time.
	PerSecond float64 `json:"per_second"`
}

// JobLine is one line of a job's results file: the input index and the
// result. Lines are in completion order; Index restores input order.
type JobLine struct {
	Index  int    `json:"index"`
	Result Result `json:"result"`
}

// jobStore keeps jobs: status in memory and in "<id>.json", results
// appended to "<id>.jsonl" as addresses finish. A finished job survives
// a restart; one that was running is reported "interrupted" with the
// results it had.
type jobStore struct {
	dir string
	log *slog.Logger

	mu   sync.Mutex
	jobs map[string]*job
	wg   sync.WaitGroup
}

type job struct {
	mu     sync.Mutex
	st     JobStatus
	out    *os.File
	w      *bufio.Writer
	cancel context.CancelFunc
}

// openJobStore loads finished jobs from dir; "" uses a private temporary
// directory (jobs then last only as long as the process).
func openJobStore(dir string, log *slog.Logger) (*jobStore, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "petrel-verify-jobs-")
		if err != nil {
			return nil, fmt.Errorf("verify: jobs dir: %w", err)
		}
		dir = d
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("verify: jobs dir: %w", err)
	}
	s := &jobStore{dir: dir, log: log, jobs: map[string]*job{}}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("verify: jobs dir: %w", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("verify: job: %w", err)
		}
		var st JobStatus
		if err := json.Unmarshal(b, &st); err != nil || st.ID == "" {
			log.Warn("verify: skipping unreadable job file", "file", n, "err", err)
			continue
		}
		if st.State == JobRunning {
			// The daemon stopped mid-job: count what reached the results
			// file so progress and buckets match the results served.
			st.State = JobInterrupted
			st.Done, st.Verdicts = 0, map[Verdict]int{}
			st.Buckets = map[string]int{"valid": 0, "risky": 0, "invalid": 0}
			if err := scanResults(s.resultsPath(st.ID), "", func(l JobLine) error {
				st.Done++
				st.Verdicts[l.Result.Verdict]++
				st.Buckets[l.Result.Verdict.Bucket()]++
				return nil
			}); err != nil {
				log.Warn("verify: interrupted job results unreadable", "job", st.ID, "err", err)
			}
		}
		s.jobs[st.ID] = &job{st: st}
	}
	return s, nil
}

func (s *jobStore) statusPath(id string) string  { return filepath.Join(s.dir, id+".json") }
func (s *jobStore) resultsPath(id string) string { return filepath.Join(s.dir, id+".jsonl") }

// writeStatus persists st atomically (temp file, fsync, rename).
func (s *jobStore) writeStatus(st JobStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("verify: job status: %w", err)
	}
	tmp := s.statusPath(st.ID) + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("verify: job status: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("verify: job status: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("verify: job status: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("verify: job status: %w", err)
	}
	if err := os.Rename(tmp, s.statusPath(st.ID)); err != nil {
		return fmt.Errorf("verify: job status: %w", err)
	}
	return nil
}

// StartJob starts verifying addrs in the background and returns the new
// job's status.
func (v *Verifier) StartJob(addrs []string) (JobStatus, error) {
	if len(addrs) == 0 {
		return JobStatus{}, errors.New("verify: empty address list")
	}
	if len(addrs) > v.cfg.MaxJobAddresses {
		return JobStatus{}, fmt.Errorf("verify: %d addresses, more than max_job_addresses %d", len(addrs), v.cfg.MaxJobAddresses)
	}
	s := v.jobs
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	id := hex.EncodeToString(idb)
	f, err := os.Create(s.resultsPath(id))
	if err != nil {
		return JobStatus{}, fmt.Errorf("verify: job results: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{out: f, w: bufio.NewWriterSize(f, 64<<10), cancel: cancel, st: JobStatus{
		ID: id, State: JobRunning, Total: len(addrs), Verdicts: map[Verdict]int{},
		Buckets: map[string]int{"valid": 0, "risky": 0, "invalid": 0}, Created: v.now().UTC(),
	}}
	if err := s.writeStatus(j.st); err != nil {
		cancel()
		f.Close()
		return JobStatus{}, err
	}
	s.mu.Lock()
	s.jobs[id] = j
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		v.runJob(ctx, j, addrs)
	}()
	return j.status(), nil
}

func (v *Verifier) runJob(ctx context.Context, j *job, addrs []string) {
	start := time.Now()
	v.log.Info("verify: job started", "job", j.st.ID, "addresses", len(addrs))
	enc := json.NewEncoder(j.w)
	var werr error
	v.VerifyMany(ctx, addrs, func(i int, r Result) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if err := enc.Encode(JobLine{Index: i, Result: r}); err != nil && werr == nil {
			werr = err
		}
		j.st.Done++
		j.st.Verdicts[r.Verdict]++
		j.st.Buckets[r.Verdict.Bucket()]++
		if el := time.Since(start).Seconds(); el > 0 {
			j.st.PerSecond = float64(j.st.Done) / el
		}
		v.met.jobAddresses.Inc()
	})
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.w.Flush(); err != nil && werr == nil {
		werr = err
	}
	if err := j.out.Sync(); err != nil && werr == nil {
		werr = err
	}
	j.out.Close()
	if ctx.Err() != nil {
		j.st.State = JobInterrupted
	} else {
		j.st.State = JobDone
	}
	fin := v.now().UTC()
	j.st.Finished = &fin
	if err := v.jobs.writeStatus(j.st); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		v.log.Error("verify: job results not fully written", "job", j.st.ID, "err", werr)
	}
	v.log.Info("verify: job finished", "job", j.st.ID, "state", j.st.State, "addresses", j.st.Done,
		"seconds", time.Since(start).Seconds(), "per_second", j.st.PerSecond, "buckets", j.st.Buckets)
}

func (j *job) status() JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.st
	st.Verdicts = make(map[Verdict]int, len(j.st.Verdicts))
	for k, n := range j.st.Verdicts {
		st.Verdicts[k] = n
	}
	st.Buckets = make(map[string]int, len(j.st.Buckets))
	for k, n := range j.st.Buckets {
		st.Buckets[k] = n
	}
	return st
}

// Job returns a job's status.
func (v *Verifier) Job(id string) (JobStatus, bool) {
	v.jobs.mu.Lock()
	j := v.jobs.jobs[id]
	v.jobs.mu.Unlock()
	if j == nil {
		return JobStatus{}, false
	}
	return j.status(), true
}

// Jobs lists all jobs, newest first.
func (v *Verifier) Jobs() []JobStatus {
	v.jobs.mu.Lock()
	var out []JobStatus
	for _, j := range v.jobs.jobs {
		out = append(out, j.status())
	}
	v.jobs.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Created.After(out[b].Created) })
	return out
}

// JobResults calls fn for each result line written so far (completion
// order), optionally only those in bucket ("" for all).
func (v *Verifier) JobResults(id, bucket string, fn func(JobLine) error) error {
	v.jobs.mu.Lock()
	j := v.jobs.jobs[id]
	v.jobs.mu.Unlock()
	if j == nil {
		return os.ErrNotExist
	}
	j.mu.Lock()
	if j.w != nil {
		_ = j.w.Flush() // make lines so far visible; a closed file errors harmlessly
	}
	j.mu.Unlock()
	return scanResults(v.jobs.resultsPath(id), bucket, fn)
}

// scanResults decodes a results file line by line; a torn last line (a
// crash mid-write) ends the scan quietly.
func scanResults(path, bucket string, fn func(JobLine) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify: job results: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	for {
		var l JobLine
		if err := dec.Decode(&l); err != nil {
			var se *json.SyntaxError
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &se) {
				return nil
			}
			return fmt.Errorf("verify: job results: %w", err)
		}
		if bucket != "" && l.Result.Verdict.Bucket() != bucket {
			continue
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

// closeAll cancels running jobs and waits for them to record their state.
func (s *jobStore) closeAll() {
	s.mu.Lock()
	for _, j := range s.jobs {
		if j.cancel != nil {
			j.cancel()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}
