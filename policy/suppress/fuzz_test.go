package suppress

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzImport feeds arbitrary bytes to the CSV importer: it must never
// panic, must store exactly as many entries as it reports, and whatever it
// stored must export to CSV that imports again without error;
// ImportSkipping of the same bytes never imports less.
func FuzzImport(f *testing.F) {
	f.Add([]byte("address,stream,reason,source,time\na@example.com,marketing,unsubscribe,crm,2025-05-01T10:00:00Z\n"))
	f.Add([]byte("b@example.com,,hard_bounce\nC@Example.org\n"))
	f.Add([]byte("\"a@example.com\n"))
	f.Add([]byte("a@b,*,complaint,\"src,with,commas\",\n"))
	f.Add([]byte("x@y,m\x00,manual\n"))
	f.Add([]byte("\xff@\xfe\n"))
	s, s2 := openT(f), openT(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, st := range []*Store{s, s2} {
			if err := st.db.DeleteRange([]byte("u"), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
		n, _ := s.Import(bytes.NewReader(data), "fuzz")
		var out bytes.Buffer
		m, err := s.Export(&out, "")
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		// Import counts every written row; later rows may overwrite
		// earlier ones with the same key.
		if m > n {
			t.Fatalf("Import reported %d, Export wrote %d", n, m)
		}
		n2, err := s2.Import(strings.NewReader(out.String()), "again")
		if err != nil || n2 != m {
			t.Fatalf("re-import of export = %d, %v (want %d)\n%s", n2, err, m, out.String())
		}
		// Skipping invalid rows imports at least what stopping at the
		// first one did, and lists no more errors than it skipped.
		rep, err := s2.ImportSkipping(bytes.NewReader(data), "fuzz")
		if err != nil || rep.Imported < n || len(rep.Errors) > rep.Skipped || len(rep.Errors) > MaxRowErrors {
			t.Fatalf("ImportSkipping = %+v, %v (Import wrote %d)", rep, err, n)
		}
	})
}
