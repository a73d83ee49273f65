package verify

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"strings"
)

//go:embed data/*.txt
var shipped embed.FS

// Lists are the data sets behind the flags: disposable domains, role
// local parts, free mailbox providers, and the providers typo suggestions
// point to. They are read once and never change afterwards.
type Lists struct {
	disposable map[string]struct{}
	role       map[string]struct{}
	free       map[string]struct{}
	providers  []string
	provSet    map[string]struct{}
}

// ListPaths name operator files replacing the shipped lists; "" keeps the
// shipped one.
type ListPaths struct {
	Disposable, Role, Free, Providers string
}

// LoadLists reads the lists (shipped data/*.txt unless replaced).
func LoadLists(p ListPaths) (*Lists, error) {
	l := &Lists{}
	var err error
	if l.disposable, _, err = readList(p.Disposable, "data/disposable.txt"); err != nil {
		return nil, err
	}
	if l.role, _, err = readList(p.Role, "data/role.txt"); err != nil {
		return nil, err
	}
	if l.free, _, err = readList(p.Free, "data/free.txt"); err != nil {
		return nil, err
	}
	if l.provSet, l.providers, err = readList(p.Providers, "data/providers.txt"); err != nil {
		return nil, err
	}
	return l, nil
}

// readList reads one entry per line (lower-cased; blank lines and '#'
// comments skipped) from path, or from the shipped file when path is "".
func readList(path, shippedName string) (map[string]struct{}, []string, error) {
	var r io.Reader
	if path == "" {
		b, err := shipped.ReadFile(shippedName)
		if err != nil {
			return nil, nil, fmt.Errorf("verify: shipped list %s: %w", shippedName, err)
		}
		r = bytes.NewReader(b)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("verify: list: %w", err)
		}
		defer f.Close()
		r = f
	}
	set := map[string]struct{}{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.ToLower(strings.TrimSpace(line))
		if line == "" {
			continue
		}
		if _, dup := set[line]; !dup {
			set[line] = struct{}{}
			order = append(order, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("verify: list %s%s: %w", path, shippedName, err)
	}
	return set, order, nil
}

// Disposable reports whether domain or one of its parent domains is a
// disposable-mailbox domain.
func (l *Lists) Disposable(domain string) bool {
	for d := domain; d != ""; {
		if _, ok := l.disposable[d]; ok {
			return true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return false
}

// Free reports whether domain is a free mailbox provider.
func (l *Lists) Free(domain string) bool {
	_, ok := l.free[domain]
	return ok
}

// Role reports whether local (ignoring case and a "+tag") names a role
// rather than a person (admin, info, postmaster, ...).
func (l *Lists) Role(local string) bool {
	local = strings.ToLower(local)
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	_, ok := l.role[local]
	return ok
}

// Suggest returns the provider domain that domain is most likely a
// misspelling of ("gmial.com" -> "gmail.com"), or "" when domain is a
// known provider or nothing is close. Close means an edit distance
// (insertions, deletions, substitutions, adjacent transpositions) of 1,
// or 2 for domains of 10 or more characters.
func (l *Lists) Suggest(domain string) string {
	if _, ok := l.provSet[domain]; ok || domain == "" {
		return ""
	}
	limit := 1
	if len(domain) >= 10 {
		limit = 2
	}
	best, bestD := "", limit+1
	var buf [3 * 64]int
	for _, p := range l.providers {
		if abs(len(p)-len(domain)) > limit {
			continue
		}
		if d := editDistance(domain, p, limit, buf[:]); d < bestD {
			best, bestD = p, d
		}
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the optimal-string-alignment distance between a and b
// (bytes; domains are ASCII here), stopping early above limit.
// buf, if long enough (3*(len(b)+1)), avoids allocating the rows.
func editDistance(a, b string, limit int, buf []int) int {
	n := len(b) + 1
	if len(buf) < 3*n {
		buf = make([]int, 3*n)
	}
	prev2, prev, cur := buf[:n], buf[n:2*n], buf[2*n:3*n]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
