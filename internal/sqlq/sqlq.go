// Package sqlq owns what the ESP stores share about their SQL text: the
// queries are written once with ? placeholders and rewritten for
// PostgreSQL's $n.
package sqlq

import (
	"strconv"
	"strings"
)

// Rebind returns query with its ? placeholders numbered $1, $2, ... when
// pg is set, and query unchanged otherwise. A ? inside a single-quoted
// SQL string literal ('a?b'; a doubled quote inside is one quote) is text, not a
// placeholder.
func Rebind(pg bool, query string) string {
	if !pg || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	inStr := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		if c == '\'' {
			inStr = !inStr
		}
		if c == '?' && !inStr {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Placeholder is the n-th (from 1) bind parameter: "$n" when pg is set,
// else "?", for queries built up piece by piece.
func Placeholder(pg bool, n int) string {
	if pg {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}
