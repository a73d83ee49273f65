package audience

import (
	"encoding/json"
	"math"
	"testing"
)

// TestFieldsJSONMatchesEncodingJSON: the import's field encoder writes
// exactly what encoding/json writes, for the stored value types.
func TestFieldsJSONMatchesEncodingJSON(t *testing.T) {
	for _, f := range []map[string]any{
		{},
		{"city": "Taipei", "score": 20.5, "orders": int64(3), "vip": true, "plan": "pro"},
		{"b": "x<y>&z\"\\\n\r\t\b\f\x01\x1f", "a": "caf\u00e9 \u2028\u2029 \xff\xfe end", "c": nil},
		{"f": 1e21, "g": 1e-7, "h": -0.000001, "i": 123456789.125, "j": 0.0, "k": -1e300, "l": 5e-324, "m": float64(1 << 53)},
		{"n": int64(math.MinInt64), "o": int64(math.MaxInt64), "p": false, "q": []string{"other"}},
	} {
		want, _ := json.Marshal(f)
		if got := appendFieldsJSON(nil, f, false); string(got) != string(want) {
			t.Errorf("%v:\n got %s\nwant %s", f, got, want)
		}
	}
	dropped := appendFieldsJSON(nil, map[string]any{"a": nil, "b": "x"}, true)
	if string(dropped) != `{"b":"x"}` {
		t.Errorf("dropNulls: %s", dropped)
	}
}

// FuzzFieldsJSON compares the field encoder with encoding/json on
// arbitrary keys, strings and numbers.
func FuzzFieldsJSON(f *testing.F) {
	f.Add("city", "Taipei", 20.5, int64(3), true)
	f.Add("k\u2028", "\xff<&>\x00", 1e-7, int64(-1), false)
	f.Fuzz(func(t *testing.T, k, s string, x float64, n int64, b bool) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		m := map[string]any{k: s, k + "x": x, k + "n": n, k + "b": b, k + "z": nil}
		want, _ := json.Marshal(m)
		if got := appendFieldsJSON(nil, m, false); string(got) != string(want) {
			t.Fatalf("got %s want %s", got, want)
		}
	})
}
