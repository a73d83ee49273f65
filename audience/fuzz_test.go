package audience

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNormalizeEmail: a normalised address normalises to itself, and its
// key is its lower-cased form.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"Alice@Example.COM", "user@Bücher.example", "\"a b\"@x.com", "a@b", "x@xn--bcher-kva.example", "a@@b.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		email, key, err := NormalizeEmail(in)
		if err != nil {
			if !IsKind(err, Invalid) {
				t.Fatalf("%q: error of the wrong kind: %v", in, err)
			}
			return
		}
		if key != strings.ToLower(email) {
			t.Fatalf("%q: key %q is not lower(%q)", in, key, email)
		}
		e2, k2, err := NormalizeEmail(email)
		if err != nil || e2 != email || k2 != key {
			t.Fatalf("%q -> %q does not normalise to itself: %q %q %v", in, email, e2, k2, err)
		}
	})
}

// FuzzImportCSV feeds arbitrary bytes to an import: it is refused with a
// client error or runs to the end with every row counted once.
func FuzzImportCSV(f *testing.F) {
	for _, s := range []string{
		"email,city,score,tags\na@example.com,Oslo,1,x;y\nbad,Oslo,x,\n",
		"\xEF\xBB\xBFemail\n\"a@example.com\"\n\"unterminated\n",
		"email,city\r\na@example.com,\"multi\r\nline\"\r\n",
		"email\n" + strings.Repeat("x@example.com\n", 3),
	} {
		f.Add([]byte(s))
	}
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(f.TempDir(), "fuzz.db"), Options{ImportDir: f.TempDir(), BatchSize: 2})
	if err != nil {
		f.Fatal(err)
	}
	a, err := s.CreateAudience(ctx, Audience{Name: "fuzz", Fields: importFields()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, bytes.NewReader(data))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not a client error: %v", err)
			}
			return
		}
		if err := s.RunImport(ctx, im.ID); err != nil {
			t.Fatalf("run: %v", err)
		}
		im, _ = s.Import(ctx, im.ID)
		if im.State != ImportDone || im.Created+im.Updated+im.Skipped+im.Failed != im.RowsRead {
			t.Fatalf("import %+v", im)
		}
	})
}

// FuzzSegmentExpression: any expression compiles or fails with a
// positioned ExprError, and a compiled one counts without crashing.
func FuzzSegmentExpression(f *testing.F) {
	for _, s := range []string{`city == "Taipei" && "vip" in tags`, `score > 1.5 || !vip`, `last_opened > now - duration("24h")`, `tags.all(t, t != "")`, `)(`, `city in ["a", "b"]`} {
		f.Add(s)
	}
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(f.TempDir(), "fuzz.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	a, _ := s.CreateAudience(ctx, Audience{Name: "fuzz", Fields: importFields()})
	s.UpsertContact(ctx, a.ID, ContactInput{Email: "a@example.com", Fields: map[string]any{"city": "Taipei", "score": 2.0}, Tags: []string{"vip"}})
	f.Fuzz(func(t *testing.T, expr string) {
		_, err := s.Count(ctx, a.ID, expr)
		var ee *ExprError
		if err != nil && !errors.As(err, &ee) && !IsKind(err, Invalid) {
			t.Fatalf("%q: %v", expr, err)
		}
		if ee != nil && (ee.Line < 1 || ee.Column < 0) {
			t.Fatalf("%q: position %d:%d", expr, ee.Line, ee.Column)
		}
	})
}
