package sqlq

import "testing"

func TestRebind(t *testing.T) {
	for _, tc := range []struct {
		pg          bool
		query, want string
	}{
		{true, "SELECT a FROM t WHERE x = ? AND y = ?", "SELECT a FROM t WHERE x = $1 AND y = $2"},
		{false, "SELECT a FROM t WHERE x = ?", "SELECT a FROM t WHERE x = ?"},
		{true, "SELECT 'a?b' FROM t WHERE x = ?", "SELECT 'a?b' FROM t WHERE x = $1"},
		{true, "SELECT 'it''s?' , ? FROM t", "SELECT 'it''s?' , $1 FROM t"},
		{true, "INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?)", "INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"},
		{true, "SELECT 1", "SELECT 1"},
	} {
		if got := Rebind(tc.pg, tc.query); got != tc.want {
			t.Errorf("Rebind(%v, %q) = %q, want %q", tc.pg, tc.query, got, tc.want)
		}
	}
}

func TestPlaceholder(t *testing.T) {
	for _, tc := range []struct {
		pg   bool
		n    int
		want string
	}{{true, 1, "$1"}, {true, 12, "$12"}, {false, 3, "?"}} {
		if got := Placeholder(tc.pg, tc.n); got != tc.want {
			t.Errorf("Placeholder(%v, %d) = %q, want %q", tc.pg, tc.n, got, tc.want)
		}
	}
}
