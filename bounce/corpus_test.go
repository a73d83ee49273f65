package bounce

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// corpusDir is the shared bounce corpus, beside the repository checkout.
const corpusDir = "../../shared/corpus/bounces"

type corpusLabel struct {
	File         string `json:"file"`
	Order        int    `json:"order"`
	Recipient    string `json:"recipient"`
	Reason       string `json:"reason"`
	Status       string `json:"status"`
	ReplyCode    string `json:"replycode"`
	HardBounce   bool   `json:"hardbounce"`
	FeedbackType string `json:"feedbacktype"`
}

func loadLabels(t *testing.T) map[string][]corpusLabel {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "labels.jsonl"))
	if err != nil {
		testnet.SkipOrFail(t, "bounce corpus not found at %s (expected ../shared beside the repo): %v", corpusDir, err)
	}
	defer f.Close()
	out := map[string][]corpusLabel{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l corpusLabel
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("labels.jsonl: %v", err)
		}
		out[l.File] = append(out[l.File], l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCorpus runs Parse over every message of the shared corpus and checks
// reason accuracy (>= 95%); it reports status, hard/soft and recipient
// accuracy and a per-reason breakdown.
func TestCorpus(t *testing.T) {
	labels := loadLabels(t)
	files, err := filepath.Glob(filepath.Join(corpusDir, "samples", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus samples: %v", err)
	}
	type tally struct{ n, ok int }
	var total, reasonOK, statusOK, hardOK, found, replyOK, fbOK int
	var foldN, foldReason, foldStatus, foldHard [folds]int
	showFold := -1 // PETREL_HOLDOUT=k hides the misses of fold k
	if v := os.Getenv("PETREL_HOLDOUT"); v != "" {
		showFold, _ = strconv.Atoi(v)
	}
	perReason := map[string]*tally{}
	var misses []string
	for _, path := range files {
		name := filepath.Base(path)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var rep *Report
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: panic: %v", name, p)
				}
			}()
			rep, err = Parse(raw)
		}()
		want := labels[name]
		if len(want) == 0 {
			t.Errorf("%s: no labels", name)
			continue
		}
		fold := foldOf(name)
		for _, w := range want {
			total++
			foldN[fold]++
			pr := perReason[w.Reason]
			if pr == nil {
				pr = &tally{}
				perReason[w.Reason] = pr
			}
			pr.n++
			var got *Bounce
			if rep != nil {
				for i := range rep.Bounces {
					if strings.EqualFold(rep.Bounces[i].Recipient, w.Recipient) {
						got = &rep.Bounces[i]
						break
					}
				}
				// Fall back to position when the address was not recovered.
				if got == nil && w.Order-1 < len(rep.Bounces) {
					got = &rep.Bounces[w.Order-1]
				} else if got != nil {
					found++
				}
			}
			hidden := fold == showFold
			if got == nil {
				if !hidden {
					misses = append(misses, name+": no bounce for "+w.Recipient+" (want "+w.Reason+")")
				}
				continue
			}
			if got.Reason == w.Reason {
				reasonOK++
				foldReason[fold]++
				pr.ok++
			} else if !hidden {
				misses = append(misses, name+": reason "+got.Reason+" want "+w.Reason+" | "+trunc(got.Diagnostic, 160))
			}
			if got.Status == w.Status || (w.Status == "" && (w.Reason == "feedback" || w.Reason == "vacation")) {
				statusOK++
				foldStatus[fold]++
			} else if !hidden && got.Reason == w.Reason {
				misses = append(misses, name+": status "+got.Status+" want "+w.Status)
			}
			if got.Hard == w.HardBounce {
				hardOK++
				foldHard[fold]++
			} else if !hidden && got.Reason == w.Reason {
				misses = append(misses, fmt.Sprintf("%s: hard %v want %v", name, got.Hard, w.HardBounce))
			}
			if strconv.Itoa(got.ReplyCode) == w.ReplyCode || (w.ReplyCode == "" && got.ReplyCode == 0) {
				replyOK++
			}
			if w.FeedbackType == "" || rep.FeedbackType == w.FeedbackType {
				fbOK++
			}
		}
	}
	pct := func(a int) float64 { return float64(a) / float64(total) }
	t.Logf("corpus: %d files, %d labelled recipients", len(files), total)
	t.Logf("reason accuracy    %.3f (%d/%d)", pct(reasonOK), reasonOK, total)
	t.Logf("status accuracy    %.3f", pct(statusOK))
	t.Logf("hard/soft accuracy %.3f", pct(hardOK))
	t.Logf("recipient found    %.3f", pct(found))
	t.Logf("reply code match   %.3f", pct(replyOK))
	t.Logf("feedback type      %.3f", pct(fbOK))
	var mr, ms, mh float64
	for k := range folds {
		n := float64(foldN[k])
		t.Logf("fold %d (%3d recipients): reason %.3f status %.3f hard/soft %.3f", k, foldN[k],
			float64(foldReason[k])/n, float64(foldStatus[k])/n, float64(foldHard[k])/n)
		mr += float64(foldReason[k]) / n / folds
		ms += float64(foldStatus[k]) / n / folds
		mh += float64(foldHard[k]) / n / folds
	}
	t.Logf("%d-fold mean: reason %.3f status %.3f hard/soft %.3f", folds, mr, ms, mh)
	names := make([]string, 0, len(perReason))
	for k := range perReason {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("  %-16s %3d/%3d %.2f", k, perReason[k].ok, perReason[k].n, float64(perReason[k].ok)/float64(perReason[k].n))
	}
	for _, m := range misses {
		t.Logf("miss: %s", m)
	}
	if r := pct(reasonOK); r < 0.95 {
		t.Errorf("reason accuracy %.3f < 0.95", r)
	}
}

// folds is the number of cross-validation folds of the corpus.
const folds = 5

// foldOf puts a corpus file in one of the folds by a hash of its name, so
// the split is the same on every run and does not depend on file order.
func foldOf(name string) int {
	h := fnv.New32a()
	fmt.Fprint(h, name)
	return int(h.Sum32() % folds)
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
