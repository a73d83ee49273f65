package audience

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ImportOptions configure a CSV import job.
type ImportOptions struct {
	// OnDuplicate is update (default) or skip for addresses already stored.
	OnDuplicate OnDuplicate `json:"on_duplicate"`
	// Tags is add (default), replace or skip: what the row's tags (its
	// "tags" column, ";"-separated, plus AddTags) do to a contact's tags.
	Tags TagMode `json:"tags"`
	// AddTags are given to every imported contact.
	AddTags []string `json:"add_tags,omitempty"`
	// Mapping maps CSV header names to targets: "email", a default field
	// (name, phone, gender, birthday, age, time_zone, locale), "status",
	// "tags", a custom field, or "" to ignore the column. Columns not
	// mapped must be named like their target.
	Mapping map[string]string `json:"mapping,omitempty"`
	// ConsentPurpose, when set, appends a grant for that purpose to the
	// ledger of every created or updated contact, with source
	// ConsentSource (default "import") and text version ConsentText.
	ConsentPurpose string `json:"consent_purpose,omitempty"`
	ConsentSource  string `json:"consent_source,omitempty"`
	ConsentText    string `json:"consent_text,omitempty"`
}

// Import is an import job and its progress.
type Import struct {
	ID         int64         `json:"id"`
	AudienceID int64         `json:"audience_id"`
	State      string        `json:"state"` // queued, running, done, failed
	Error      string        `json:"error,omitempty"`
	Options    ImportOptions `json:"options"`
	RowsRead   int64         `json:"rows_read"`
	Created    int64         `json:"created"`
	Updated    int64         `json:"updated"`
	Skipped    int64         `json:"skipped"`
	Failed     int64         `json:"failed"`
	// Line is the last CSV line committed.
	Line int64 `json:"line"`
	// BytesDone of BytesTotal bytes of the file are committed (progress).
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ImportError is one row's problem.
type ImportError struct {
	Line   int64  `json:"line"`
	Column string `json:"column"`
	Reason string `json:"reason"`
}

// Import job states.
const (
	ImportQueued  = "queued"
	ImportRunning = "running"
	ImportDone    = "done"
	ImportFailed  = "failed"
)

var defaultTargets = []string{"email", "name", "phone", "gender", "birthday", "age", "time_zone", "locale", "status", "tags"}

// header is the column → target mapping stored with a job.
type header struct {
	Targets []string `json:"targets"` // per column; "" = ignored
}

// CreateImport stores the CSV read from r as a new job for the audience
// and checks its encoding and header. The job runs with RunImport (the
// HTTP handler starts it at once).
func (s *Store) CreateImport(ctx context.Context, audience int64, opts ImportOptions, r io.Reader) (Import, error) {
	if s.opts.ImportDir == "" {
		return Import{}, errors.New("audience: no import directory configured")
	}
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return Import{}, err
	}
	if err := opts.check(); err != nil {
		return Import{}, err
	}
	if err := os.MkdirAll(s.opts.ImportDir, 0o700); err != nil {
		return Import{}, fmt.Errorf("audience: import dir: %w", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	path := filepath.Join(s.opts.ImportDir, "import-"+hex.EncodeToString(b)+".csv")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Import{}, fmt.Errorf("audience: import file: %w", err)
	}
	size, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return Import{}, fmt.Errorf("audience: import upload: %w", err)
	}
	h, offset, line, err := readHeader(path, &a, &opts)
	if err != nil {
		os.Remove(path)
		return Import{}, err
	}
	hj, _ := json.Marshal(h)
	oj, _ := json.Marshal(opts)
	now := s.now()
	var id int64
	err = s.db.QueryRowContext(ctx, s.q(`INSERT INTO imports (audience_id, path, options, state, header, size, byte_offset, line, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id`),
		audience, path, string(oj), ImportQueued, string(hj), size, offset, line, now, now).Scan(&id)
	if err != nil {
		os.Remove(path)
		return Import{}, fmt.Errorf("audience: create import: %w", err)
	}
	return s.Import(ctx, id)
}

func (o *ImportOptions) check() error {
	if o.OnDuplicate == "" {
		o.OnDuplicate = DupUpdate
	}
	if o.Tags == "" {
		o.Tags = TagsAdd
	}
	if o.OnDuplicate != DupUpdate && o.OnDuplicate != DupSkip {
		return invalid("invalid_import", "on_duplicate %q: want update or skip", o.OnDuplicate)
	}
	if o.Tags != TagsAdd && o.Tags != TagsReplace && o.Tags != TagsSkip {
		return invalid("invalid_import", "tags %q: want add, replace or skip", o.Tags)
	}
	for _, t := range o.AddTags {
		if t == "" {
			return invalid("invalid_tag", "empty tag")
		}
		if err := checkTag(t); err != nil {
			return err
		}
	}
	if o.ConsentPurpose != "" {
		if o.ConsentSource == "" {
			o.ConsentSource = "import"
		}
		if !ledgerWord.MatchString(o.ConsentPurpose) || !ledgerWord.MatchString(o.ConsentSource) || len(o.ConsentText) > maxText {
			return invalid("invalid_consent", "consent_purpose and consent_source must be lower-case words")
		}
	}
	return nil
}

// utf8BOM starts some UTF-8 files (Excel writes it).
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readHeader checks the file's encoding, reads its header row and maps
// the columns. It returns the offset and line just after the header.
func readHeader(path string, a *Audience, opts *ImportOptions) (header, int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return header{}, 0, 0, fmt.Errorf("audience: import: %w", err)
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return header{}, 0, 0, fmt.Errorf("audience: import: %w", err)
	}
	head = head[:n]
	switch {
	case n == 0:
		return header{}, 0, 0, invalid("invalid_csv", "the file is empty: a header row is required")
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return header{}, 0, 0, invalid("invalid_encoding", "the file is UTF-16; save it as UTF-8 (with or without BOM)")
	case bytes.IndexByte(head, 0) >= 0:
		return header{}, 0, 0, invalid("invalid_encoding", "the file contains NUL bytes: it is not UTF-8 text (save it as UTF-8, with or without BOM)")
	}
	check := head
	if n == len(head) { // a rune may be cut at the end of the sample
		for i := 0; i < utf8.UTFMax && len(check) > 0 && !utf8.Valid(check); i++ {
			check = check[:len(check)-1]
		}
	}
	if !utf8.Valid(check) {
		return header{}, 0, 0, invalid("invalid_encoding", "the file is not UTF-8 (Latin-1 or Windows-1252?): save it as UTF-8, with or without BOM")
	}
	var base int64
	if bytes.HasPrefix(head, utf8BOM) {
		base = int64(len(utf8BOM))
	}
	if _, err := f.Seek(base, io.SeekStart); err != nil {
		return header{}, 0, 0, fmt.Errorf("audience: import: %w", err)
	}
	cr := newCSVReader(f)
	cols, err := cr.Read()
	if err != nil {
		return header{}, 0, 0, invalid("invalid_csv", "header row: %v", err)
	}
	h := header{Targets: make([]string, len(cols))}
	var unknown []string
	seen := map[string]bool{}
	for i, c := range cols {
		name := strings.TrimSpace(c)
		target, mapped := opts.Mapping[name]
		if !mapped {
			target = strings.ToLower(name)
			if !slices.Contains(defaultTargets, target) && a.field(target) == nil {
				unknown = append(unknown, strconv.Quote(name))
				continue
			}
		}
		if target == "" {
			continue
		}
		if !slices.Contains(defaultTargets, target) && a.field(target) == nil {
			return header{}, 0, 0, invalid("invalid_mapping", "column %q is mapped to %q, which is neither a contact field nor a field of audience %q", name, target, a.Name)
		}
		if seen[target] {
			return header{}, 0, 0, invalid("invalid_mapping", "two columns map to %q", target)
		}
		seen[target] = true
		h.Targets[i] = target
	}
	if len(unknown) > 0 {
		if len(unknown) > 10 {
			unknown = append(unknown[:10], fmt.Sprintf("and %d more", len(unknown)-10))
		}
		return header{}, 0, 0, invalid("unknown_columns", "unknown columns %s: map them to a field or to \"\" to ignore them", strings.Join(unknown, ", "))
	}
	if !seen["email"] {
		return header{}, 0, 0, invalid("invalid_mapping", "no email column")
	}
	line, _ := cr.FieldPos(len(cols) - 1)
	return h, base + cr.InputOffset(), int64(line + strings.Count(cols[len(cols)-1], "\n")), nil
}

func newCSVReader(r io.Reader) *csv.Reader {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.FieldsPerRecord = -1 // ragged rows are row errors, not the end of the import
	cr.ReuseRecord = true
	return cr
}

// Import returns a job.
func (s *Store) Import(ctx context.Context, id int64) (Import, error) {
	var im Import
	var opts string
	var created, updated int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, audience_id, state, error, options, rows_read, created, updated, skipped, failed, line, byte_offset, size, created_at, updated_at FROM imports WHERE id = ?`), id).
		Scan(&im.ID, &im.AudienceID, &im.State, &im.Error, &opts, &im.RowsRead, &im.Created, &im.Updated, &im.Skipped, &im.Failed, &im.Line, &im.BytesDone, &im.BytesTotal, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Import{}, notFound("no import %d", id)
	}
	if err != nil {
		return Import{}, fmt.Errorf("audience: import: %w", err)
	}
	if err := json.Unmarshal([]byte(opts), &im.Options); err != nil {
		return Import{}, fmt.Errorf("audience: import %d options: %w", id, err)
	}
	im.CreatedAt, im.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	return im, nil
}

// ImportErrors returns a job's row errors in line order, after the given
// line, at most limit (default 1000).
func (s *Store) ImportErrors(ctx context.Context, id, afterLine int64, limit int) ([]ImportError, error) {
	return rowErrors(ctx, s, "import errors", `SELECT line, col, reason FROM import_errors WHERE import_id = ? AND line > ? ORDER BY line, col LIMIT ?`,
		id, afterLine, limit, func(pos int64, col, reason string) ImportError {
			return ImportError{Line: pos, Column: col, Reason: reason}
		})
}

// rowErrors reads a job's row errors after position after, at most limit
// (default 1000, at most 10000): query selects (position, column,
// reason) for a job id, a position and a limit; mk makes one element.
func rowErrors[T any](ctx context.Context, s *Store, what, query string, id, after int64, limit int, mk func(pos int64, col, reason string) T) ([]T, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audience: %s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var pos int64
		var col, reason string
		if err := rows.Scan(&pos, &col, &reason); err != nil {
			return nil, fmt.Errorf("audience: %s: %w", what, err)
		}
		out = append(out, mk(pos, col, reason))
	}
	return out, rows.Err()
}

// PendingImports returns the ids of jobs not finished (queued, or running
// when the process stopped): petreld resumes them at start.
func (s *Store) PendingImports(ctx context.Context) ([]int64, error) {
	return s.unfinished(ctx, "imports")
}

// RunImport runs (or resumes) a job to its end. Each batch of rows, its
// row errors, ledger entries, counters and the file offset after it are
// one transaction, so a job killed at any point resumes after its last
// committed row and ends as an uninterrupted run would.
func (s *Store) RunImport(ctx context.Context, id int64) error {
	var (
		audience           int64
		path, opts, hdr    string
		state              string
		offset, line, read int64
	)
	err := s.db.QueryRowContext(ctx, s.q(`SELECT audience_id, path, options, header, state, byte_offset, line, rows_read FROM imports WHERE id = ?`), id).
		Scan(&audience, &path, &opts, &hdr, &state, &offset, &line, &read)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("no import %d", id)
	}
	if err != nil {
		return fmt.Errorf("audience: import %d: %w", id, err)
	}
	if state == ImportDone || state == ImportFailed {
		return nil
	}
	var o ImportOptions
	var h header
	if err := json.Unmarshal([]byte(opts), &o); err != nil {
		return fmt.Errorf("audience: import %d: %w", id, err)
	}
	if err := json.Unmarshal([]byte(hdr), &h); err != nil {
		return fmt.Errorf("audience: import %d: %w", id, err)
	}
	// Only an unfinished job becomes running: another runner may have
	// finished it since it was read above.
	res, err := s.exec(ctx, s.db, `UPDATE imports SET state = ?, updated_at = ? WHERE id = ? AND state IN (?, ?)`, ImportRunning, s.now(), id, ImportQueued, ImportRunning)
	if err != nil {
		return fmt.Errorf("audience: import %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil
	}
	for {
		err = s.runImport(ctx, id, audience, path, &o, &h, offset, line)
		if !errors.Is(err, errImportMoved) && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		// Another runner (or the last transaction of a killed one, which
		// a PostgreSQL server may still commit after its client died)
		// committed past our position, or finished the job and removed
		// its file: continue from the stored position, or stop.
		if qerr := s.db.QueryRowContext(ctx, s.q(`SELECT state, byte_offset, line FROM imports WHERE id = ?`), id).Scan(&state, &offset, &line); qerr != nil {
			err = fmt.Errorf("audience: import %d: %w", id, qerr)
			break
		}
		if state == ImportDone || state == ImportFailed {
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			break // the upload is gone and the job is not finished
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return err // stopped, not failed: resumes later
		}
		if _, uerr := s.exec(context.WithoutCancel(ctx), s.db, `UPDATE imports SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state = ?`, ImportFailed, err.Error(), s.now(), id, ImportRunning); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	if _, err := s.exec(ctx, s.db, `UPDATE imports SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, ImportDone, s.now(), id, ImportRunning); err != nil {
		return fmt.Errorf("audience: import %d: %w", id, err)
	}
	// Fresh planner statistics after a bulk load (segment counts, the
	// contact listing).
	if err := s.analyze(ctx); err != nil {
		slog.Warn("audience: analyze after import", "import", id, "err", err)
	}
	os.Remove(path)
	return nil
}

// errImportMoved means the job's stored offset is not where this runner
// left it: its batch was not committed.
var errImportMoved = errors.New("import advanced by another runner")

type pendingRow struct {
	line int64
	r    row
}

// readBatch is one batch of parsed rows, handed from the CSV reader to
// the committer.
type readBatch struct {
	rows    []pendingRow
	errs    []ImportError
	read    int64 // records read, good or bad
	offset  int64 // file offset after the batch
	endLine int64 // last line of the batch
	err     error // reading failed (the batch is not to be committed)
}

// runImport reads and validates the CSV in one goroutine while the
// previous batch commits in this one (the two halves of an import cost
// about the same CPU). At most two batches are in memory.
func (s *Store) runImport(ctx context.Context, id, audience int64, path string, o *ImportOptions, h *header, offset, line int64) error {
	a, err := s.Audience(ctx, audience)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import file: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("import file: %w", err)
	}
	conn, err := s.importConn(ctx)
	if err != nil {
		return err
	}
	defer s.releaseImportConn(conn)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	batches := make(chan readBatch, 1)
	go s.readBatches(rctx, f, &a, h, o, offset, line, batches)
	committed := offset
	n := 0
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		if err := s.commitBatch(ctx, conn, id, &a, o, b.rows, b.errs, b.read, committed, b.offset, b.endLine); err != nil {
			return err
		}
		committed = b.offset
		n++
		if s.d == postgres && n&(n-1) == 0 {
			// The planner's statistics of a table growing from empty are
			// stale at once: without this, the per-batch lookup of
			// existing addresses turns into a sequential scan and the
			// import goes quadratic. Refresh them as the table doubles.
			if err := s.analyze(ctx); err != nil {
				return fmt.Errorf("analyze: %w", err)
			}
		}
		if s.opts.afterBatch != nil {
			s.opts.afterBatch()
		}
	}
	return ctx.Err()
}

// readBatches parses the CSV from r (positioned at offset, after line)
// into batches of BatchSize records and sends them to out, which it
// closes at the end of the file, on an error or when ctx ends.
func (s *Store) readBatches(ctx context.Context, r io.Reader, a *Audience, h *header, o *ImportOptions, offset, line int64, out chan<- readBatch) {
	defer close(out)
	cr := newCSVReader(r)
	send := func(b readBatch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	b := readBatch{endLine: line}
	for {
		rec, rerr := cr.Read()
		if errors.Is(rerr, io.EOF) {
			break
		}
		b.read++
		b.endLine = recordEndLine(cr, rec, rerr, line)
		var pe *csv.ParseError
		if rerr != nil {
			if !errors.As(rerr, &pe) {
				send(readBatch{err: fmt.Errorf("read: %w", rerr)})
				return
			}
			b.errs = append(b.errs, ImportError{Line: line + int64(pe.StartLine), Column: "", Reason: "malformed CSV: " + pe.Err.Error()})
		} else {
			l, _ := cr.FieldPos(0)
			recLine := line + int64(l)
			row, ierr := a.rowFromCSV(rec, h, o)
			if ierr != nil {
				col := ""
				var fe *fieldError
				if errors.As(ierr, &fe) {
					col = fe.col
				}
				b.errs = append(b.errs, ImportError{Line: recLine, Column: col, Reason: ierr.Error()})
			} else {
				b.rows = append(b.rows, pendingRow{recLine, row})
			}
		}
		if int(b.read) >= s.opts.BatchSize {
			b.offset = offset + cr.InputOffset()
			if !send(b) {
				return
			}
			b = readBatch{endLine: b.endLine}
		}
	}
	if b.read > 0 {
		b.offset = offset + cr.InputOffset()
		send(b)
	}
}

// recordEndLine is the absolute line the record just read ends on.
func recordEndLine(cr *csv.Reader, rec []string, rerr error, baseLine int64) int64 {
	var pe *csv.ParseError
	if errors.As(rerr, &pe) {
		return baseLine + int64(pe.Line)
	}
	if len(rec) == 0 {
		return baseLine
	}
	l, _ := cr.FieldPos(len(rec) - 1)
	return baseLine + int64(l) + int64(strings.Count(rec[len(rec)-1], "\n"))
}

func (a *Audience) rowFromCSV(rec []string, h *header, o *ImportOptions) (row, error) {
	if len(rec) != len(h.Targets) {
		return row{}, invalid("ragged_row", "row has %d columns, the header %d", len(rec), len(h.Targets))
	}
	var in ContactInput
	var tags []string
	for i, target := range h.Targets {
		v := rec[i]
		if target == "" {
			continue
		}
		if !utf8.ValidString(v) {
			return row{}, &fieldError{target, invalid("invalid_encoding", "%s: not valid UTF-8", target)}
		}
		if target != "email" && target != "tags" {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
		}
		switch target {
		case "email":
			in.Email = v
		case "name":
			in.Name = ptr(v)
		case "phone":
			in.Phone = ptr(v)
		case "gender":
			in.Gender = ptr(v)
		case "birthday":
			in.Birthday = ptr(v)
		case "time_zone":
			in.TimeZone = ptr(v)
		case "locale":
			in.Locale = ptr(v)
		case "status":
			in.Status = Status(strings.ToLower(v))
		case "age":
			n, err := strconv.Atoi(v)
			if err != nil {
				return row{}, &fieldError{"age", invalid("invalid_value", "age %q is not a whole number", v)}
			}
			in.Age = &n
		case "tags":
			for _, t := range strings.Split(v, ";") {
				if t = strings.TrimSpace(t); t != "" {
					tags = append(tags, t)
				}
			}
		default:
			if in.Fields == nil {
				in.Fields = map[string]any{}
			}
			in.Fields[target] = v
		}
	}
	if o.Tags != TagsSkip {
		in.Tags = append(tags, o.AddTags...)
		if in.Tags == nil {
			in.Tags = []string{}
		}
	}
	return a.validate(&in)
}

// commitBatch writes one batch of an import with its errors, ledger
// entries and the job's progress in one transaction; offset and endLine
// are where the batch ends in the file.
func (s *Store) commitBatch(ctx context.Context, conn *sql.Conn, id int64, a *Audience, o *ImportOptions, batch []pendingRow, errs []ImportError, read, from, offset, endLine int64) error {
	return s.txOn(ctx, conn, func(tx *sql.Tx) error {
		if s.d == postgres {
			// See importConn: the batch and its offset commit or vanish
			// together, so a batch lost with the server is read again.
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return fmt.Errorf("audience: import: %w", err)
			}
		}
		// Claim the batch first: the job row stays locked until commit,
		// and a runner whose position is stale writes nothing.
		res, err := s.exec(ctx, tx, `UPDATE imports SET updated_at = ? WHERE id = ? AND byte_offset = ?`, s.now(), id, from)
		if err != nil {
			return fmt.Errorf("audience: import claim: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errImportMoved
		}
		rows := make([]row, len(batch))
		for i := range batch {
			rows[i] = batch[i].r
		}
		results, err := s.upsert(ctx, tx, a, rows, o.OnDuplicate, o.Tags)
		if err != nil {
			return err
		}
		var created, updated, skipped int64
		var grants []int64
		for i, r := range results {
			switch r.Outcome {
			case Created:
				created++
			case Updated:
				updated++
			case Skipped:
				skipped++
			case Failed:
				errs = append(errs, ImportError{Line: batch[i].line, Column: r.Column, Reason: r.Reason})
				continue
			}
			if (r.Outcome == Created || r.Outcome == Updated) && o.ConsentPurpose != "" {
				grants = append(grants, r.ID)
			}
		}
		if err := s.insertImportErrors(ctx, tx, id, errs); err != nil {
			return err
		}
		if err := s.insertGrants(ctx, tx, grants, o); err != nil {
			return err
		}
		q := `UPDATE imports SET byte_offset = ?, line = ?, rows_read = rows_read + ?, created = created + ?, updated = updated + ?, skipped = skipped + ?, failed = failed + ?, updated_at = ? WHERE id = ?`
		args := []any{offset, endLine, read, created, updated, skipped, int64(len(errs)), s.now(), id}
		_, err = s.exec(ctx, tx, q, args...)
		return err
	})
}

func (s *Store) insertImportErrors(ctx context.Context, tx *sql.Tx, id int64, errs []ImportError) error {
	for chunk := range slices.Chunk(errs, 1000) {
		args := make([]any, 0, 4*len(chunk))
		for _, e := range chunk {
			reason := e.Reason
			if len(reason) > 500 {
				reason = reason[:500]
			}
			args = append(args, id, e.Line, e.Column, strings.ToValidUTF8(reason, "?"))
		}
		q := `INSERT INTO import_errors (import_id, line, col, reason) VALUES ` + strings.TrimSuffix(strings.Repeat("(?,?,?,?),", len(chunk)), ",") + ` ON CONFLICT DO NOTHING`
		if _, err := s.exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("audience: import errors: %w", err)
		}
	}
	return nil
}

func (s *Store) insertGrants(ctx context.Context, tx *sql.Tx, ids []int64, o *ImportOptions) error {
	now := s.now()
	if s.d == postgres && len(ids) > 0 {
		q := `INSERT INTO consent (contact_id, purpose, action, at, source, text_version) SELECT u.id, ?, ?, CAST(? AS BIGINT), ?, ? FROM unnest(CAST(? AS BIGINT[])) WITH ORDINALITY AS u(id, n) ORDER BY u.n`
		if _, err := s.exec(ctx, tx, q, o.ConsentPurpose, string(Granted), now, o.ConsentSource, o.ConsentText, ids); err != nil {
			return fmt.Errorf("audience: import consent: %w", err)
		}
		return nil
	}
	for chunk := range slices.Chunk(ids, 1000) {
		args := make([]any, 0, 6*len(chunk))
		for _, id := range chunk {
			args = append(args, id, o.ConsentPurpose, string(Granted), now, o.ConsentSource, o.ConsentText)
		}
		q := `INSERT INTO consent (contact_id, purpose, action, at, source, text_version) VALUES ` + strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?),", len(chunk)), ",")
		if _, err := s.exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("audience: import consent: %w", err)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// analyze refreshes the planner's statistics of the contact tables.
// SQLite's ANALYZE reads every index entry (about a second for a million
// contacts): its sampled form (analysis_limit) was tried and is wrong here,
// it took one audience of a million contacts for about a thousand rows
// per audience, and SQLite then listed an audience's contacts through the
// (audience_id, status) index and sorted them all (0.6 s a page at 1M
// instead of 0.6 ms) and counted segments through it too.
func (s *Store) analyze(ctx context.Context) error {
	if s.d == postgres {
		_, err := s.db.ExecContext(ctx, `ANALYZE contacts, contact_tags`)
		return err
	}
	for _, q := range []string{`ANALYZE contacts`, `ANALYZE contact_tags`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// importConn is the connection an import commits its batches on. Its
// commits are not flushed to disk one by one (SQLite: synchronous=NORMAL
// in WAL mode, flushed at checkpoints; PostgreSQL: synchronous_commit off
// per batch, flushed by the WAL writer within a fraction of a second):
// an import batch is acknowledged to no one, and it commits atomically
// with the job's file offset, so a batch lost in a power cut (SQLite) or a
// server crash (PostgreSQL) is lost with its offset and read again when
// the job resumes. A kill -9 of petreld loses nothing committed on either
// backend. The rest of the store keeps synchronous=FULL.
func (s *Store) importConn(ctx context.Context) (*sql.Conn, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("audience: import: %w", err)
	}
	if s.d == sqlite {
		// A 64 MiB page cache for the import's connection (32 MiB for the
		// others): at a million contacts the indexes an import writes at
		// random keys (address, tags) are larger than 32 MiB, and a
		// smaller cache spills dirty pages to the WAL mid-batch and reads
		// them back.
		for _, q := range []string{`PRAGMA synchronous = NORMAL`, `PRAGMA cache_size = -65536`} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				conn.Close()
				return nil, fmt.Errorf("audience: import: %w", err)
			}
		}
	}
	return conn, nil
}

func (s *Store) releaseImportConn(conn *sql.Conn) {
	if s.d == sqlite {
		for _, q := range []string{`PRAGMA synchronous = FULL`, `PRAGMA cache_size = -32768`} {
			if _, err := conn.ExecContext(context.Background(), q); err != nil {
				// A connection that cannot be set back is not returned to the pool.
				conn.Raw(func(any) error { return driver.ErrBadConn })
				break
			}
		}
	}
	conn.Close()
}
