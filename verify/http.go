package verify

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// maxLineBytes bounds the request body per address allowed in a job.
const maxLineBytes = 512

// Handler serves the verification API. It does no authentication: mount
// it behind petreld's API-key middleware.
//
//	GET  /api/v1/verify?address=A[&quick=1]       one Result
//	POST /api/v1/verify/jobs                      CSV (text/csv) or JSON list → JobStatus (202)
//	GET  /api/v1/verify/jobs                      []JobStatus
//	GET  /api/v1/verify/jobs/{id}                 JobStatus (progress)
//	GET  /api/v1/verify/jobs/{id}/results?format=csv|json&bucket=valid|risky|invalid
func (v *Verifier) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/verify", v.handleSingle)
	mux.HandleFunc("POST /api/v1/verify/jobs", v.handleCreate)
	mux.HandleFunc("GET /api/v1/verify/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, v.Jobs())
	})
	mux.HandleFunc("GET /api/v1/verify/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		st, ok := v.Job(r.PathValue("id"))
		if !ok {
			writeErr(w, http.StatusNotFound, "not_found", "no such job")
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /api/v1/verify/jobs/{id}/results", v.handleResults)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr writes petreld's error shape {"error":{"code","message"}}.
func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (v *Verifier) handleSingle(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("address")
	if strings.TrimSpace(addr) == "" {
		writeErr(w, http.StatusBadRequest, "bad_request", "address parameter is required")
		return
	}
	if q := r.URL.Query().Get("quick"); q == "1" || q == "true" {
		writeJSON(w, http.StatusOK, v.Quick(r.Context(), addr))
		return
	}
	writeJSON(w, http.StatusOK, v.Verify(r.Context(), addr))
}

func (v *Verifier) handleCreate(w http.ResponseWriter, r *http.Request) {
	limit := int64(v.cfg.MaxJobAddresses)*maxLineBytes + 4096
	body := http.MaxBytesReader(w, r.Body, limit)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var addrs []string
	var err error
	switch ct {
	case "text/csv", "text/plain":
		addrs, err = ParseCSV(body)
	case "application/json", "":
		addrs, err = parseJSONList(body)
	default:
		writeErr(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send text/csv or application/json")
		return
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "too_large", "address list too large")
			return
		}
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if len(addrs) > v.cfg.MaxJobAddresses {
		writeErr(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("%d addresses; max_job_addresses is %d", len(addrs), v.cfg.MaxJobAddresses))
		return
	}
	st, err := v.StartJob(addrs)
	if err != nil {
		if len(addrs) == 0 {
			writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Location", "/api/v1/verify/jobs/"+st.ID)
	writeJSON(w, http.StatusAccepted, st)
}

// parseJSONList accepts ["a@b", ...] or {"addresses": ["a@b", ...]}.
func parseJSONList(r io.Reader) ([]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var obj struct {
		Addresses []string `json:"addresses"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("body must be a JSON array of addresses or {\"addresses\": [...]}: %w", err)
	}
	return obj.Addresses, nil
}

// ParseCSV reads an address list: the column headed "email", "address"
// or "email_address" when the first row has such a header, else the first
// column. Blank rows are skipped. Rows may have any number of fields.
func ParseCSV(r io.Reader) ([]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	col := 0
	var out []string
	for row := 0; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		if row == 0 {
			header := false
			for i, f := range rec {
				switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(f, "\ufeff"))) {
				case "email", "address", "email_address", "e-mail":
					col, header = i, true
				}
				if header {
					break
				}
			}
			if header {
				continue
			}
		}
		if col >= len(rec) {
			continue
		}
		a := strings.TrimSpace(strings.TrimPrefix(rec[col], "\ufeff"))
		if a != "" {
			out = append(out, a)
		}
	}
}

// csvHeader is the column list of CSV results.
func csvHeader() []string {
	return []string{"index", "address", "normalized", "verdict", "bucket", "reasons", "disposable", "role",
		"free_provider", "catch_all", "full_inbox", "disabled", "suggestion", "smtp_code", "smtp_enhanced", "smtp_message"}
}

func csvRow(l JobLine) []string {
	r := l.Result
	b := strconv.FormatBool
	return []string{strconv.Itoa(l.Index), r.Address, r.Normalized, string(r.Verdict), r.Verdict.Bucket(),
		strings.Join(r.Reasons, " "), b(r.Flags.Disposable), b(r.Flags.Role), b(r.Flags.FreeProvider),
		b(r.Flags.CatchAll), b(r.Flags.FullInbox), b(r.Flags.Disabled), r.Suggestion,
		strconv.Itoa(r.Stages.SMTP.Code), r.Stages.SMTP.Enhanced, r.Stages.SMTP.Message}
}

func (v *Verifier) handleResults(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := v.Job(id); !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such job")
		return
	}
	bucket := r.URL.Query().Get("bucket")
	switch bucket {
	case "", "valid", "risky", "invalid":
	default:
		writeErr(w, http.StatusBadRequest, "bad_request", "bucket must be valid, risky or invalid")
		return
	}
	var err error
	switch format := r.URL.Query().Get("format"); format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write(csvHeader())
		err = v.JobResults(id, bucket, func(l JobLine) error { return cw.Write(csvRow(l)) })
		cw.Flush()
	case "json", "":
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		sep := "["
		err = v.JobResults(id, bucket, func(l JobLine) error {
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			sep = ","
			return enc.Encode(l)
		})
		if sep == "[" {
			_, _ = io.WriteString(w, "[")
		}
		_, _ = io.WriteString(w, "]\n")
	default:
		writeErr(w, http.StatusBadRequest, "bad_request", "format must be csv or json")
		return
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		v.log.Warn("verify: streaming job results", "job", id, "err", err)
	}
}
