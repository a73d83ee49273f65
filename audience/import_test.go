package audience

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func importFields() []Field {
	return []Field{{Name: "city", Type: Text}, {Name: "score", Type: Number}, {Name: "vip", Type: Boolean}}
}

func runImport(t *testing.T, s *Store, audience int64, opts ImportOptions, data string) Import {
	t.Helper()
	ctx := context.Background()
	im, err := s.CreateImport(ctx, audience, opts, strings.NewReader(data))
	if err != nil {
		t.Fatalf("create import: %v", err)
	}
	if err := s.RunImport(ctx, im.ID); err != nil {
		t.Fatalf("run import: %v", err)
	}
	im, err = s.Import(ctx, im.ID)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func TestImportCSV(t *testing.T) {
	eachBackend(t, Options{BatchSize: 3}, func(t *testing.T, s *Store) {
		s.opts.ImportDir = t.TempDir()
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "imp", Fields: importFields()})
		erased, _, _ := s.UpsertContact(ctx, a.ID, ContactInput{Email: "gone@example.com"})
		if _, err := s.Erase(ctx, a.ID, erased.ID); err != nil {
			t.Fatal(err)
		}
		data := "\xEF\xBB\xBFEmail,Name,City,Score,VIP,Tags,Notes\n" + // BOM; Notes is ignored by mapping
			"a@example.com,Ann,Taipei,1.5,true,red;blue,x\n" + // line 2
			"not-an-email,Bob,Paris,2,false,,x\n" + // 3: invalid email
			"b@example.com,Bea,\"Oslo\nNorth\",3,no,red,x\n" + // 4-5: quoted newline
			"c@example.com,Cy,Rome,lots,yes,,x\n" + // 6: bad number
			"d@example.com,Di\n" + // 7: ragged
			"A@EXAMPLE.COM,Ann2,,,,green,x\n" + // 8: same address as line 2, updates it
			"gone@example.com,G,,,,,x\n" + // 9: erased
			"\n" + // 10: blank, skipped by CSV
			"e@example.com,\"Eve \"\"E\"\" Smith\",Lima,4,1,,x\n" // 11
		im := runImport(t, s, a.ID, ImportOptions{Mapping: map[string]string{"Notes": ""}, AddTags: []string{"imported"}, ConsentPurpose: "marketing", ConsentText: "v1"}, data)
		if im.State != ImportDone || im.BytesDone != int64(len(data)) || im.BytesTotal != int64(len(data)) || im.RowsRead != 8 || im.Line != 11 || im.Created != 3 || im.Updated != 1 || im.Failed != 4 || im.Skipped != 0 {
			t.Fatalf("import %+v", im)
		}
		errs, err := s.ImportErrors(ctx, im.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range errs {
			got = append(got, fmt.Sprintf("%d:%s", e.Line, e.Column))
		}
		if want := []string{"3:email", "6:score", "7:", "9:email"}; !slices.Equal(got, want) {
			t.Fatalf("errors %v (%+v), want %v", got, errs, want)
		}
		c, _ := s.ContactByEmail(ctx, a.ID, "a@example.com")
		if c.Name != "Ann2" || c.Fields["city"] != "Taipei" || c.Fields["score"] != 1.5 || c.Fields["vip"] != true || !slices.Equal(c.Tags, []string{"blue", "green", "imported", "red"}) {
			t.Fatalf("a: %+v", c)
		}
		b, _ := s.ContactByEmail(ctx, a.ID, "b@example.com")
		if b.Fields["city"] != "Oslo\nNorth" || b.Fields["vip"] != false {
			t.Fatalf("b: %+v", b)
		}
		e, _ := s.ContactByEmail(ctx, a.ID, "e@example.com")
		if e.Name != `Eve "E" Smith` {
			t.Fatalf("e: %+v", e)
		}
		if ok, _ := s.HasConsent(ctx, a.ID, e.ID, "marketing"); !ok {
			t.Fatal("import consent not recorded")
		}
		// The same file again with skip: nothing changes.
		im2 := runImport(t, s, a.ID, ImportOptions{OnDuplicate: DupSkip, Mapping: map[string]string{"Notes": ""}}, data)
		if im2.Created != 0 || im2.Updated != 0 || im2.Skipped != 4 || im2.Failed != 4 {
			t.Fatalf("second import %+v", im2)
		}
		// Tag modes on update.
		runImport(t, s, a.ID, ImportOptions{Tags: TagsReplace}, "email,tags\na@example.com,solo\n")
		c, _ = s.ContactByEmail(ctx, a.ID, "a@example.com")
		if !slices.Equal(c.Tags, []string{"solo"}) {
			t.Fatalf("replace: %v", c.Tags)
		}
		runImport(t, s, a.ID, ImportOptions{Tags: TagsSkip}, "email,tags,city\na@example.com,other,Kyoto\n")
		c, _ = s.ContactByEmail(ctx, a.ID, "a@example.com")
		if !slices.Equal(c.Tags, []string{"solo"}) || c.Fields["city"] != "Kyoto" {
			t.Fatalf("skip tags: %+v", c)
		}
		// Finished jobs leave no upload behind.
		if left, _ := filepath.Glob(filepath.Join(s.opts.ImportDir, "*")); len(left) != 0 {
			t.Fatalf("uploads left: %v", left)
		}
	})
}

func TestImportRejects(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, s *Store) {
		s.opts.ImportDir = t.TempDir()
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "imp", Fields: importFields()})
		wide := "email," + strings.Repeat("x,", 100000) + "y\n"
		for _, tc := range []struct {
			name, data, code string
			opts             ImportOptions
		}{
			{"empty", "", "invalid_csv", ImportOptions{}},
			{"utf16", "\xFF\xFEe\x00m\x00", "invalid_encoding", ImportOptions{}},
			{"latin1", "email,city\na@example.com,M\xFCnchen\n", "invalid_encoding", ImportOptions{}},
			{"nul", "email\na@exa\x00mple.com\n", "invalid_encoding", ImportOptions{}},
			{"unknown column", "email,town\n", "unknown_columns", ImportOptions{}},
			{"100k columns", wide, "unknown_columns", ImportOptions{}},
			{"no email", "city\nTaipei\n", "invalid_mapping", ImportOptions{}},
			{"bad mapping", "email,town\n", "invalid_mapping", ImportOptions{Mapping: map[string]string{"town": "nope"}}},
			{"bad header quote", "email,\"city\n", "invalid_csv", ImportOptions{}},
			{"bad option", "email\n", "invalid_import", ImportOptions{OnDuplicate: "merge"}},
		} {
			_, err := s.CreateImport(ctx, a.ID, tc.opts, strings.NewReader(tc.data))
			var e *Error
			if !asError(err, &e) || e.Code != tc.code {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(s.opts.ImportDir, "*")); len(left) != 0 {
			t.Fatalf("rejected uploads left: %v", left)
		}
		// Row-level problems: a 10 MB field and bad quotes fail their row only.
		big := "email,city\nbig@example.com," + strings.Repeat("x", 10<<20) + "\nbad@example.com,a\"b\nok@example.com,Oslo\n"
		im := runImport(t, s, a.ID, ImportOptions{}, big)
		if im.State != ImportDone || im.Created != 1 || im.Failed != 2 {
			t.Fatalf("import %+v", im)
		}
		if _, err := s.ContactByEmail(ctx, a.ID, "ok@example.com"); err != nil {
			t.Fatal(err)
		}
	})
}

// importCrashEnv names the environment of the helper process.
const importCrashEnv = "AUDIENCE_IMPORT_HELPER"

// TestImportHelperProcess is the child of TestImportResumesAfterKill9: it
// runs one import slowly until it is killed.
func TestImportHelperProcess(t *testing.T) {
	spec := os.Getenv(importCrashEnv)
	if spec == "" {
		return // not the helper; nothing to test on its own
	}
	dsn, idText, _ := strings.Cut(spec, "|")
	id, _ := strconv.ParseInt(idText, 10, 64)
	s, err := Open(context.Background(), dsn, Options{BatchSize: 50, afterBatch: func() { time.Sleep(15 * time.Millisecond) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RunImport(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	t.Fatal("helper import finished before it was killed")
}

func crashCSV(n int) string {
	var b strings.Builder
	b.WriteString("email,name,city,score,vip,tags\n")
	for i := range n {
		switch {
		case i%97 == 0:
			fmt.Fprintf(&b, "broken-%d,x,,,,\n", i)
		case i%89 == 0:
			fmt.Fprintf(&b, "u%d@example.com,\"multi\nline %d\",Oslo,%d,true,a;b\n", i, i, i)
		case i%83 == 0: // repeats an earlier address
			fmt.Fprintf(&b, "U%d@Example.com,again,Rome,%d,false,c\n", i-1, i)
		default:
			fmt.Fprintf(&b, "u%d@example.com,n%d,City%d,%d.5,%v,t%d\n", i, i, i%13, i, i%2 == 0, i%5)
		}
	}
	return b.String()
}

func TestImportResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := backendDSN(t, backend)
			s, err := Open(ctx, dsn, Options{BatchSize: 50, ImportDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			data := crashCSV(6000)
			opts := ImportOptions{AddTags: []string{"batch"}, ConsentPurpose: "marketing"}
			crashed, _ := s.CreateAudience(ctx, Audience{Name: "crashed", Fields: importFields()})
			clean, _ := s.CreateAudience(ctx, Audience{Name: "clean", Fields: importFields()})
			im, err := s.CreateImport(ctx, crashed.ID, opts, strings.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			for kill := range 2 {
				cmd := exec.Command(exe, "-test.run=^TestImportHelperProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), importCrashEnv+"="+dsn+"|"+strconv.FormatInt(im.ID, 10))
				out := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Kill it once it has committed a few more batches.
				before, _ := s.Import(ctx, im.ID)
				deadline := time.Now().Add(60 * time.Second)
				for {
					cur, err := s.Import(ctx, im.ID)
					if err != nil {
						t.Fatal(err)
					}
					if cur.State == ImportDone {
						t.Fatalf("import finished before kill %d", kill)
					}
					if cur.RowsRead >= before.RowsRead+500 {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						cmd.Wait()
						t.Fatalf("helper made no progress: %+v\n%s", cur, out)
					}
					time.Sleep(5 * time.Millisecond)
				}
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				werr := cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("helper did not die of SIGKILL: %v\n%s", werr, out)
				}
			}
			mid, _ := s.Import(ctx, im.ID)
			if mid.State != ImportRunning || mid.RowsRead == 0 || mid.RowsRead >= 6000 {
				t.Fatalf("after the kills: %+v", mid)
			}
			pending, _ := s.PendingImports(ctx)
			if !slices.Contains(pending, im.ID) {
				t.Fatalf("pending %v lacks %d", pending, im.ID)
			}
			if err := s.RunImport(ctx, im.ID); err != nil {
				t.Fatal(err)
			}
			resumed, _ := s.Import(ctx, im.ID)
			ref := runImport(t, s, clean.ID, opts, data)
			if resumed.State != ImportDone || resumed.RowsRead != 6000 || resumed.RowsRead != ref.RowsRead || resumed.Created != ref.Created ||
				resumed.Updated != ref.Updated || resumed.Skipped != ref.Skipped || resumed.Failed != ref.Failed || resumed.Line != ref.Line {
				t.Fatalf("resumed %+v\nreference %+v", resumed, ref)
			}
			if ref.Created == 0 || ref.Updated == 0 || ref.Failed == 0 {
				t.Fatalf("weak data set: %+v", ref)
			}
			e1, _ := s.ImportErrors(ctx, im.ID, 0, 10000)
			e2, _ := s.ImportErrors(ctx, ref.ID, 0, 10000)
			if !slices.Equal(e1, e2) {
				t.Fatalf("errors differ: %d vs %d", len(e1), len(e2))
			}
			snapshot := func(aud int64) []string {
				var out []string
				var after int64
				for {
					page, next, err := s.ListContacts(ctx, aud, ListOptions{After: after, Limit: 1000})
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range page {
						l, _ := s.Consent(ctx, aud, c.ID)
						out = append(out, fmt.Sprintf("%s|%s|%s|%v|%v|%d", c.Email, c.Name, c.Status, c.Fields, c.Tags, len(l)))
					}
					if next == 0 {
						return out
					}
					after = next
				}
			}
			got, want := snapshot(crashed.ID), snapshot(clean.ID)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("contact %d differs:\n%s\n%s", i, got[i], want[i])
					}
				}
				t.Fatalf("%d contacts after resume, %d uninterrupted", len(got), len(want))
			}
		})
	}
}

func TestConcurrentImportsIntoOneAudience(t *testing.T) {
	eachBackend(t, Options{BatchSize: 100}, func(t *testing.T, s *Store) {
		s.opts.ImportDir = t.TempDir()
		ctx := context.Background()
		a, _ := s.CreateAudience(ctx, Audience{Name: "c", Fields: importFields()})
		const n = 1500
		var up, down strings.Builder
		up.WriteString("email,city,tags\n")
		down.WriteString("email,city,tags\n")
		for i := range n {
			fmt.Fprintf(&up, "u%d@example.com,Up,up\n", i)
			fmt.Fprintf(&down, "u%d@example.com,Down,down\n", n-1-i)
		}
		var ims []Import
		for _, data := range []string{up.String(), down.String()} {
			im, err := s.CreateImport(ctx, a.ID, ImportOptions{}, strings.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			ims = append(ims, im)
		}
		errc := make(chan error, 2)
		for _, im := range ims {
			go func() { errc <- s.RunImport(ctx, im.ID) }()
		}
		for range ims {
			if err := <-errc; err != nil {
				t.Fatalf("concurrent import: %v", err)
			}
		}
		for _, im := range ims {
			got, _ := s.Import(ctx, im.ID)
			if got.State != ImportDone || got.Created+got.Updated != n || got.Failed != 0 {
				t.Fatalf("import %+v", got)
			}
		}
		total, err := s.Count(ctx, a.ID, `true`)
		if err != nil || total != n {
			t.Fatalf("%d contacts, %v; want %d", total, err, n)
		}
		both, _ := s.Count(ctx, a.ID, `"up" in tags && "down" in tags && (city == "Up" || city == "Down")`)
		if both != n {
			t.Fatalf("%d contacts carry both imports' tags, want %d", both, n)
		}
	})
}

// TestTwoRunnersOneImport runs one job in two stores at once (as when the
// last transaction of a killed runner is still committed by PostgreSQL
// after a new runner started): every batch is applied once.
func TestTwoRunnersOneImport(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := backendDSN(t, backend)
			dir := t.TempDir()
			s1, err := Open(ctx, dsn, Options{BatchSize: 20, ImportDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer s1.Close()
			s2, err := Open(ctx, dsn, Options{BatchSize: 20, ImportDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			data := crashCSV(2000)
			a, _ := s1.CreateAudience(ctx, Audience{Name: "two", Fields: importFields()})
			ref, _ := s1.CreateAudience(ctx, Audience{Name: "ref", Fields: importFields()})
			im, err := s1.CreateImport(ctx, a.ID, ImportOptions{}, strings.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 2)
			for _, s := range []*Store{s1, s2} {
				go func() { errc <- s.RunImport(ctx, im.ID) }()
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			got, _ := s1.Import(ctx, im.ID)
			want := runImport(t, s1, ref.ID, ImportOptions{}, data)
			if got.State != ImportDone || got.RowsRead != want.RowsRead || got.Created != want.Created || got.Updated != want.Updated || got.Failed != want.Failed {
				t.Fatalf("two runners %+v\nreference %+v", got, want)
			}
		})
	}
}
