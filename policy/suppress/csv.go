package suppress

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
)

// CSVHeader is the header row Export writes and Import accepts:
// address,stream,reason,source,time (time in RFC 3339).
var csvHeader = []string{"address", "stream", "reason", "source", "time"}

// compactAfter is the import size after which Import compacts the store.
const compactAfter = 500000

// importBatch is how many entries one unsynced Pebble batch holds.
const importBatch = 20000

// Import reads CSV rows address[,stream[,reason[,source[,time]]]] (an
// optional header row starting with "address" is skipped; empty fields get
// the defaults "*", manual, defaultSource, now) and adds them in large
// unsynced batches followed by one synced commit (and a full compaction
// after 500k+ rows, so lookups stay one bloom check per level). It stops at the first
// invalid row, naming its line; rows before it stay imported. It returns
// the number of entries written.
func (s *Store) Import(r io.Reader, defaultSource string) (int, error) {
	var rep ImportReport
	err := s.importCSV(r, defaultSource, nil, &rep)
	return rep.Imported, err
}

// RowError is an import row that was skipped: its line and why.
type RowError struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// ImportReport is what ImportSkipping did: rows written, rows skipped,
// and the first MaxRowErrors of the skipped rows' errors.
type ImportReport struct {
	Imported int        `json:"imported"`
	Skipped  int        `json:"skipped"`
	Errors   []RowError `json:"errors"`
}

// MaxRowErrors bounds the row errors an ImportReport lists (Skipped
// counts them all).
const MaxRowErrors = 1000

// ImportSkipping is Import that skips an invalid row (a bad address,
// stream, reason or time, too many fields, a CSV syntax error) instead of
// stopping there, and reports it. Only a failure to read r or to commit
// is an error; the rows committed before it are in the report.
func (s *Store) ImportSkipping(r io.Reader, defaultSource string) (ImportReport, error) {
	rep := ImportReport{Errors: []RowError{}}
	err := s.importCSV(r, defaultSource, func(line int, err error) {
		rep.Skipped++
		if len(rep.Errors) < MaxRowErrors {
			rep.Errors = append(rep.Errors, RowError{Line: line, Message: err.Error()})
		}
	}, &rep)
	return rep, err
}

// importCSV is Import's loop. A row error goes to skip when it is set
// (the import goes on), or ends the import otherwise.
func (s *Store) importCSV(r io.Reader, defaultSource string, skip func(line int, err error), rep *ImportReport) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	if defaultSource == "" {
		defaultSource = "import"
	}
	now := time.Now().UTC()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	var pending []Entry
	n, inBatch, rows := 0, 0, 0
	flush := func(opts *pebble.WriteOptions) error {
		if err := b.Commit(opts); err != nil {
			return fmt.Errorf("suppress: import: %w", err)
		}
		b.Close()
		b = s.db.NewBatch()
		s.signalOutbox()
		if s.OnChange != nil {
			for _, e := range pending {
				s.OnChange(e, false)
			}
		}
		pending = pending[:0]
		inBatch = 0
		return nil
	}
	var rowErr error
	// bad records a row error: skipped, or the end of the import.
	bad := func(line int, err error) bool {
		if skip == nil {
			rowErr = err
			return false
		}
		skip(line, err)
		return true
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && bad(pe.Line, fmt.Errorf("suppress: import: %w", err)) {
				rows++
				continue
			}
			if rowErr == nil {
				rowErr = fmt.Errorf("suppress: import: %w", err)
			}
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 0 || (len(rec) == 1 && strings.TrimSpace(rec[0]) == "") {
			continue
		}
		rows++
		if rows == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "address") {
			continue
		}
		if len(rec) > len(csvHeader) {
			if bad(line, fmt.Errorf("suppress: import line %d: %d fields, at most %d", line, len(rec), len(csvHeader))) {
				continue
			}
			break
		}
		e := Entry{Address: rec[0], Source: defaultSource, Time: now}
		if len(rec) > 1 {
			e.Stream = strings.TrimSpace(rec[1])
		}
		if len(rec) > 2 {
			e.Reason = Reason(strings.TrimSpace(rec[2]))
		}
		if len(rec) > 3 && strings.TrimSpace(rec[3]) != "" {
			e.Source = strings.TrimSpace(rec[3])
		}
		if len(rec) > 4 && strings.TrimSpace(rec[4]) != "" {
			t, err := time.Parse(time.RFC3339, strings.TrimSpace(rec[4]))
			if err != nil {
				if bad(line, fmt.Errorf("suppress: import line %d: time: %w", line, err)) {
					continue
				}
				break
			}
			e.Time = t
		}
		if err := prepare(&e); err != nil {
			if bad(line, fmt.Errorf("suppress: import line %d: %w", line, err)) {
				continue
			}
			break
		}
		if err := b.Set(key(e.Stream, strings.ToLower(e.Address)), encodeValue(e), nil); err != nil {
			rep.Imported = n - inBatch
			return fmt.Errorf("suppress: import: %w", err)
		}
		if err := s.setWithOutbox(b, e, false); err != nil {
			rep.Imported = n - inBatch
			return fmt.Errorf("suppress: import: %w", err)
		}
		if s.OnChange != nil {
			pending = append(pending, e)
		}
		n++
		inBatch++
		if inBatch == importBatch {
			if err := flush(pebble.NoSync); err != nil {
				rep.Imported = n - inBatch
				return err
			}
		}
	}
	// The final commit is synced, which makes every earlier unsynced
	// batch durable too (one WAL).
	if err := flush(pebble.Sync); err != nil {
		rep.Imported = n - inBatch
		return err
	}
	rep.Imported = n
	if n >= compactAfter {
		if err := s.Compact(); err != nil {
			s.log.Warn("compaction after import failed", "err", err)
		}
	}
	return rowErr
}

// Export writes every entry (of stream, or all streams when stream is "")
// as CSV with a header row, in key order.
func (s *Store) Export(w io.Writer, stream string) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return 0, fmt.Errorf("suppress: export: %w", err)
	}
	n := 0
	after := ""
	for {
		p, err := s.List(stream, after, 10000)
		if err != nil {
			return n, err
		}
		for _, e := range p.Entries {
			if err := cw.Write([]string{e.Address, e.Stream, string(e.Reason), e.Source, e.Time.Format(time.RFC3339Nano)}); err != nil {
				return n, fmt.Errorf("suppress: export: %w", err)
			}
			n++
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, fmt.Errorf("suppress: export: %w", err)
	}
	return n, nil
}
