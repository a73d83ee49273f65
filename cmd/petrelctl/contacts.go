package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// contactsCommands are the ESP audience commands: audiences, contacts,
// segments and imports (package audience's API).
func contactsCommands() map[string]command {
	return map[string]command{
		"audiences list":   {usage: "list audiences", run: audiencesList},
		"audiences create": {usage: "NAME [--double-opt-in] [--field name:type[:v1|v2...]]...", run: audiencesCreate},
		"contacts list":    {usage: "--audience A [--segment S | --where EXPR] [--limit N] [--after CURSOR]", run: contactsList},
		"contacts import":  {usage: "FILE --audience A [--on-duplicate update|skip] [--tags add|replace|skip] [--add-tag T]... [--map COL=FIELD]... [--consent-purpose P]", run: contactsImport},
		"segments count":   {usage: "--audience A EXPR", run: segmentsCount},
		"imports show":     {usage: "ID [--errors]", run: importsShow},
	}
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type audienceJSON struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	DoubleOptIn bool   `json:"double_opt_in"`
	Fields      []struct {
		Name   string   `json:"name"`
		Type   string   `json:"type"`
		Values []string `json:"values,omitempty"`
	} `json:"fields"`
}

// audienceID resolves an audience given by id or name.
func audienceID(ctx context.Context, e *env, a string) (int64, error) {
	if a == "" {
		return 0, fmt.Errorf("--audience is required")
	}
	if id, err := strconv.ParseInt(a, 10, 64); err == nil {
		return id, nil
	}
	var list struct {
		Audiences []audienceJSON `json:"audiences"`
	}
	if err := e.call(ctx, "GET", "/api/v1/audiences", nil, &list); err != nil {
		return 0, err
	}
	for _, x := range list.Audiences {
		if x.Name == a {
			return x.ID, nil
		}
	}
	return 0, fmt.Errorf("no audience named %q", a)
}

func audiencesList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var list struct {
		Audiences []audienceJSON `json:"audiences"`
	}
	if err := e.call(ctx, "GET", "/api/v1/audiences", nil, &list); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(list)
	}
	for _, a := range list.Audiences {
		mode := "single opt-in"
		if a.DoubleOptIn {
			mode = "double opt-in"
		}
		fmt.Fprintf(e.Out, "%d\t%s\t%s\n", a.ID, a.Name, mode)
	}
	return nil
}

func audiencesCreate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("audiences create", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	doi := fs.Bool("double-opt-in", false, "contacts confirm by mail before they are active")
	var fields multiFlag
	fs.Var(&fields, "field", "custom field name:type[:v1|v2] (type text, number, boolean, date, datetime, enum)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	in := map[string]any{"name": pos[0], "double_opt_in": *doi}
	var fl []map[string]any
	for _, f := range fields {
		parts := strings.SplitN(f, ":", 3)
		if len(parts) < 2 {
			return fmt.Errorf("--field %q: want name:type", f)
		}
		m := map[string]any{"name": parts[0], "type": parts[1]}
		if len(parts) == 3 {
			m["values"] = strings.Split(parts[2], "|")
		}
		fl = append(fl, m)
	}
	in["fields"] = fl
	var a audienceJSON
	if err := e.call(ctx, "POST", "/api/v1/audiences", in, &a); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(a)
	}
	fmt.Fprintf(e.Out, "audience %d %s (%d fields)\n", a.ID, a.Name, len(a.Fields))
	return nil
}

func contactsList(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("contacts list", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	aud := fs.String("audience", "", "audience id or name")
	seg := fs.String("segment", "", "saved segment id or name")
	where := fs.String("where", "", "segment expression (CEL)")
	limit := fs.Int("limit", 100, "page size")
	after := fs.String("after", "", "cursor from the previous page")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) != 0 {
		return errUsage
	}
	aid, err := audienceID(ctx, e, *aud)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *seg != "" {
		q.Set("segment", *seg)
	}
	if *where != "" {
		q.Set("where", *where)
	}
	if *after != "" {
		q.Set("after", *after)
	}
	var page struct {
		Contacts []struct {
			ID     int64    `json:"id"`
			Email  string   `json:"email"`
			Status string   `json:"status"`
			Name   string   `json:"name"`
			Tags   []string `json:"tags"`
		} `json:"contacts"`
		Next string `json:"next"`
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", fmt.Sprintf("/api/v1/audiences/%d/contacts?%s", aid, q.Encode()), nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, c := range page.Contacts {
		fmt.Fprintf(e.Out, "%d\t%s\t%s\t%s\t%s\n", c.ID, c.Email, c.Status, c.Name, strings.Join(c.Tags, ","))
	}
	if page.Next != "" {
		fmt.Fprintf(e.Err, "more: --after %s\n", page.Next)
	}
	return nil
}

func segmentsCount(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("segments count", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	aud := fs.String("audience", "", "audience id or name")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	aid, err := audienceID(ctx, e, *aud)
	if err != nil {
		return err
	}
	var out struct {
		Count int `json:"count"`
	}
	if err := e.call(ctx, "POST", fmt.Sprintf("/api/v1/audiences/%d/segments/count", aid), map[string]string{"expression": pos[0]}, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	fmt.Fprintln(e.Out, out.Count)
	return nil
}

// importJSON is the part of audience.Import the CLI prints.
type importJSON struct {
	ID         int64  `json:"id"`
	State      string `json:"state"`
	Error      string `json:"error"`
	RowsRead   int64  `json:"rows_read"`
	Created    int64  `json:"created"`
	Updated    int64  `json:"updated"`
	Skipped    int64  `json:"skipped"`
	Failed     int64  `json:"failed"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
}

func contactsImport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("contacts import", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	aud := fs.String("audience", "", "audience id or name")
	dup := fs.String("on-duplicate", "update", "update or skip addresses already stored")
	tags := fs.String("tags", "add", "add, replace or skip: what the rows' tags do to a contact's tags")
	purpose := fs.String("consent-purpose", "", "record a consent grant for this purpose (e.g. marketing) for every imported contact")
	source := fs.String("consent-source", "", "source of that consent (default import)")
	text := fs.String("consent-text", "", "consent text or its version")
	poll := fs.Duration("poll", 500*time.Millisecond, "progress poll interval")
	var addTags, maps multiFlag
	fs.Var(&addTags, "add-tag", "tag every imported contact (repeatable)")
	fs.Var(&maps, "map", "COLUMN=FIELD maps a CSV column to a field; COLUMN= ignores it (repeatable)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	aid, err := audienceID(ctx, e, *aud)
	if err != nil {
		return err
	}
	q := url.Values{"on_duplicate": {*dup}, "tags": {*tags}}
	if len(addTags) > 0 {
		q.Set("add_tags", strings.Join(addTags, ","))
	}
	for _, m := range maps {
		col, field, ok := strings.Cut(m, "=")
		if !ok {
			return fmt.Errorf("--map %q: want COLUMN=FIELD", m)
		}
		q.Set("map."+col, field)
	}
	if *purpose != "" {
		q.Set("consent_purpose", *purpose)
		q.Set("consent_source", *source)
		q.Set("consent_text", *text)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	resp, err := e.rawRequest(ctx, "POST", fmt.Sprintf("/api/v1/audiences/%d/imports?%s", aid, q.Encode()), "text/csv", f)
	if err != nil {
		return err
	}
	var job importJSON
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for job.State == "queued" || job.State == "running" {
		if !e.JSON {
			importProgress(e.Err, job)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(e.Err, "\nimport %d continues in petreld; follow it with: petrelctl imports show %d\n", job.ID, job.ID)
			return ctx.Err()
		case <-time.After(*poll):
		}
		if err := e.call(ctx, "GET", fmt.Sprintf("/api/v1/imports/%d", job.ID), nil, &job); err != nil {
			return err
		}
	}
	if e.JSON {
		return e.printJSON(job)
	}
	importProgress(e.Err, job)
	fmt.Fprintln(e.Err)
	printImport(e.Out, job)
	if job.State == "failed" {
		return fmt.Errorf("import %d failed: %s", job.ID, job.Error)
	}
	return nil
}

func printImport(w io.Writer, j importJSON) {
	fmt.Fprintf(w, "import %d %s: %d rows read, %d created, %d updated, %d skipped, %d failed\n", j.ID, j.State, j.RowsRead, j.Created, j.Updated, j.Skipped, j.Failed)
	if j.Failed > 0 {
		fmt.Fprintf(w, "row errors: petrelctl imports show %d --errors\n", j.ID)
	}
}

// importProgress redraws one line: bar by bytes committed, row counts.
func importProgress(w io.Writer, j importJSON) {
	const width = 30
	frac := 0.0
	if j.BytesTotal > 0 {
		frac = float64(j.BytesDone) / float64(j.BytesTotal)
	}
	n := int(frac * width)
	fmt.Fprintf(w, "\r[%s%s] %3.0f%% %d rows, %d failed", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, j.RowsRead, j.Failed)
}

func importsShow(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("imports show", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	errs := fs.Bool("errors", false, "print the row errors as CSV (line, column, reason)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return errUsage
	}
	if *errs {
		resp, err := e.rawRequest(ctx, "GET", fmt.Sprintf("/api/v1/imports/%d/errors?format=csv", id), "", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(e.Out, resp.Body)
		return err
	}
	var job importJSON
	if err := e.call(ctx, "GET", fmt.Sprintf("/api/v1/imports/%d", id), nil, &job); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(job)
	}
	printImport(e.Out, job)
	return nil
}
