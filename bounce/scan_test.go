package bounce

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// scanEquivalent checks every hand-written scanner against the regular
// expression it replaces, on one text: the address scan (findAddrs ==
// reAddr), the recipient lines (rcptLines == reRcptLine), the
// delivery-status start and the returned-message marker (lineIndex ==
// the (?m) regexp over the whole text), and the header-field test of
// inNotRecipientField.
func scanEquivalent(t *testing.T, s string) {
	t.Helper()
	if got, want := findAddrs(s, 1000), reAddr.FindAllString(s, 1000); !slices.Equal(got, want) {
		t.Fatalf("findAddrs(%.80q) = %q, want %q", s, got, want)
	}
	var want []string
	for _, m := range reRcptLine.FindAllStringSubmatch(s, 32) {
		want = append(want, m[1]+m[2])
	}
	if got := rcptLines(s, 32); !slices.Equal(got, want) {
		t.Fatalf("rcptLines(%.80q) = %q, want %q", s, got, want)
	}
	for _, re := range []struct {
		name string
		got  []int
		want []int
	}{
		{"reDSNStart", lineIndex([]byte(s), false, &dsnStartFirst, reDSNStart), reDSNStart.FindIndex([]byte(s))},
		{"reOriginal", findOriginal([]byte(s)), reOriginal.FindIndex([]byte(s))},
	} {
		if !slices.Equal(re.got, re.want) {
			t.Fatalf("%s on %.80q: %v, want %v", re.name, s, re.got, re.want)
		}
	}
	if got, want := stripTags(s), reTag.ReplaceAllString(s, " "); got != want {
		t.Fatalf("stripTags(%.80q) = %.80q, want %.80q", s, got, want)
	}
	if !hasReplyDash(s) && reContinuation.MatchString(s) {
		t.Fatalf("hasReplyDash(%.80q) = false, but reContinuation matches", s)
	}
	lower := asciiLower(s)
	at, leads := commandWordsAt(lower)
	if want := commandWordsIndex(lower); !slices.Equal(at, want) {
		t.Fatalf("commandWordsAt(%.80q) = %v, want %v", lower, at, want)
	}
	if want := leadsIndex(lower); !slices.Equal(leads, want) {
		t.Fatalf("commandWordsAt(%.80q) leads = %v, want %v", lower, leads, want)
	}
	for i := 0; i <= len(lower); i += max(1, len(lower)/300) {
		from := max(0, i-reCommandWindow)
		lo := 0
		for lo < len(leads) && leads[lo][0] < from {
			lo++
		}
		if got, want := leadWithin(leads[lo:], i), hasCommandLead(lower[from:i]); got != want {
			t.Fatalf("leadWithin(%.80q, %d) = %v, want %v", lower, i, got, want)
		}
	}
	for i := 0; i <= len(lower); i += max(1, len(lower)/200) {
		ls := strings.LastIndexByte(lower[:i], '\n') + 1
		if got, want := inNotRecipientField(lower, i), reNotRecipientField.MatchString(lower[ls:i]); got != want {
			t.Fatalf("inNotRecipientField(%.80q, %d) = %v, want %v", lower, i, got, want)
		}
	}
}

// commandWordsIndex is what commandWordsAt replaces: every word's
// non-overlapping occurrences by strings.Index, sorted.
func commandWordsIndex(lower string) []int {
	var at []int
	for _, w := range commandWords {
		for i := 0; ; {
			j := strings.Index(lower[i:], w)
			if j < 0 {
				break
			}
			at = append(at, i+j)
			i += j + len(w)
		}
	}
	slices.Sort(at)
	return at
}

// leadsIndex is every occurrence of commandLeads by strings.Index, in
// order of start.
func leadsIndex(lower string) [][2]int {
	var out [][2]int
	for _, w := range commandLeads {
		for i := 0; ; {
			j := strings.Index(lower[i:], w)
			if j < 0 {
				break
			}
			out = append(out, [2]int{i + j, i + j + len(w)})
			i += j + 1
		}
	}
	slices.SortFunc(out, func(a, b [2]int) int { return a[0] - b[0] })
	return out
}

// reTag is the tag pattern stripTags replaces.
var reTag = regexp.MustCompile(`(?s)<[^>]*>`)

// scanSeeds are edge cases for the scanners.
var scanSeeds = []string{"", "@", "a@", "@b.example", "x a@b.example y", "a@b@c.example", "<a.b@c.example>,d@e.example",
	"me@x.example.", "..@..", "a@b-.c", "a@b.c-", "a@b.c-d-.e", "a@b.-c.d", "a@1.2.3", "a@b..c", "a@b.c.", "a@-b.c",
	"<user@x.example>:\nfoo\n  <v@y.example>  \nRCPT TO: <w@z.example>\nrcpt to:q@r.example\n",
	"\tRCPT TO:<x@y.example> \r\n", "Final-Recipient: rfc822; a@b\n", "x\nreporting-MTA: dns;\n", " Reporting-MTA: dns;",
	"\n--- Below this line is a copy of the message.\n", "> Message-ID: <a@b.example>\n", ">>From: a@b.example",
	"X-Foo : a@b.example", "list-id: <x@y.example>", "received: from a@b.example", "Subject: a@b.example\n", "<b>x</b> <<a> >", "a < b", "<p>\n<br/>\n", "starttlstarttls datadata rcpt mail helo ehlo connect", "RCPT TO:<a@b.example> after DATA", "in reply to rcpt to command", "response to mail from", "for data", "fo", "for",
	"during sending of data: command rejected", "reply toreply to", "550-5.1.1 x\n550 5.1.1 y", "a-550-b", "25-"}

// TestScannersMatchRegexps runs scanEquivalent on the seeds and on every
// shared corpus file.
func TestScannersMatchRegexps(t *testing.T) {
	texts := slices.Clone(scanSeeds)
	files, _ := filepath.Glob(filepath.Join(corpusDir, "samples", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, strings.ReplaceAll(string(raw), "\r\n", "\n"))
	}
	for _, s := range texts {
		scanEquivalent(t, s)
	}
}

// TestRequiredLiterals checks that every literal requiredLiterals names
// for a rule pattern is in every text the pattern matches (the corpus
// files, lower-cased, and hand-made texts), so skipping the regexp when
// one is missing never changes a result, and that the common shapes get
// their literals.
func TestRequiredLiterals(t *testing.T) {
	for p, want := range map[string][]string{"mailbox .*full": {"mailbox ", "full"}, "(?:a|b)c": {"c"},
		"user \\(.*\\) unknown": {"user (", ") unknown"}, "a|b": nil, "^x$": {"x"}} {
		_, got, err := compileLowerNeed(p)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("compileLowerNeed(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	texts := []string{"mailbox is full", "user (x) unknown", "quota exceeded for this mailbox"}
	files, _ := filepath.Glob(filepath.Join(corpusDir, "samples", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, strings.ToLower(string(raw)))
	}
	r := DefaultRules()
	n := 0
	for _, rr := range r.byName {
		for i, re := range rr.patterns {
			for _, text := range texts {
				if !re.MatchString(text) {
					continue
				}
				n++
				for _, lit := range rr.need[i] {
					if !strings.Contains(text, lit) {
						t.Fatalf("pattern %s matches a text without its literal %q", re, lit)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no pattern matched any text")
	}
}

// FuzzScanners checks the hand-written scanners against their regular
// expressions on arbitrary text.
func FuzzScanners(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { scanEquivalent(t, s) })
}
