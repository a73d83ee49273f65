package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"
)

// suppressionEntry mirrors suppress.Entry's JSON.
type suppressionEntry struct {
	Address string    `json:"address"`
	Stream  string    `json:"stream"`
	Reason  string    `json:"reason"`
	Source  string    `json:"source"`
	Time    time.Time `json:"time"`
}

func suppressionCommands() map[string]command {
	return map[string]command{
		"suppression add":    {"ADDRESS [-stream S|*] [-reason manual|hard_bounce|complaint|unsubscribe]: suppress an address", suppressionAdd},
		"suppression remove": {"ADDRESS [-stream S|*]: lift a suppression", suppressionRemove},
		"suppression list":   {"[-stream S]: list suppressed addresses", suppressionList},
		"suppression import": {"FILE|- [-source S]: import CSV address,stream,reason,source,time", suppressionImport},
		"suppression export": {"[-stream S] [FILE]: export CSV (stdout without FILE)", suppressionExport},
	}
}

// parseInterspersed parses fs from args, allowing flags after positional
// arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func suppressionFlags(e *env, name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Err)
	return fs, fs.String("stream", "*", `stream ("*" = every stream)`)
}

func suppressionAdd(ctx context.Context, e *env, args []string) error {
	fs, stream := suppressionFlags(e, "suppression add")
	reason := fs.String("reason", "manual", "manual, hard_bounce, complaint or unsubscribe")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	var out suppressionEntry
	in := map[string]string{"address": pos[0], "stream": *stream, "reason": *reason, "source": "petrelctl"}
	if err := e.call(ctx, http.MethodPost, "/api/v1/suppressions", in, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Out, "suppressed %s in stream %s (%s)\n", out.Address, out.Stream, out.Reason)
	return nil
}

func suppressionRemove(ctx context.Context, e *env, args []string) error {
	fs, stream := suppressionFlags(e, "suppression remove")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	var out suppressionEntry
	path := "/api/v1/suppressions/" + url.PathEscape(*stream) + "/" + url.PathEscape(pos[0])
	if err := e.call(ctx, http.MethodDelete, path, nil, &out); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			where := "stream " + *stream
			if *stream == "*" {
				where = `the global list (stream "*", the default without -stream)`
			}
			return fmt.Errorf("%s is not suppressed in %s; an entry of one stream needs -stream STREAM (petrelctl suppression list shows each entry's stream): %w", pos[0], where, err)
		}
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Out, "removed %s from stream %s\n", out.Address, out.Stream)
	return nil
}

func suppressionList(ctx context.Context, e *env, args []string) error {
	fs, stream := suppressionFlags(e, "suppression list")
	*stream = ""
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 0 {
		return errUsage
	}
	var all []suppressionEntry
	after := ""
	for {
		var page struct {
			Entries []suppressionEntry `json:"entries"`
			Next    string             `json:"next"`
		}
		q := url.Values{"limit": {"1000"}, "stream": {*stream}}
		if after != "" {
			q.Set("after", after)
		}
		if err := e.call(ctx, http.MethodGet, "/api/v1/suppressions?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		all = append(all, page.Entries...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if e.JSON {
		return e.printJSON(all)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSTREAM\tREASON\tSOURCE\tSINCE")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Address, s.Stream, s.Reason, s.Source, s.Time.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "%d suppressed address(es)\n", len(all))
	return nil
}

func suppressionImport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("suppression import", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	source := fs.String("source", "import", "source recorded on rows without one")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	var body io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("suppression import: %w", err)
		}
		defer f.Close()
		body = f
	}
	resp, err := e.rawRequest(ctx, http.MethodPost, "/api/v1/suppressions/import?source="+url.QueryEscape(*source), "text/csv", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Imported int `json:"imported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if e.JSON {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Out, "imported %d address(es)\n", out.Imported)
	return nil
}

func suppressionExport(ctx context.Context, e *env, args []string) error {
	fs, stream := suppressionFlags(e, "suppression export")
	*stream = ""
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) > 1 {
		return errUsage
	}
	resp, err := e.rawRequest(ctx, http.MethodGet, "/api/v1/suppressions/export?stream="+url.QueryEscape(*stream), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := e.Out
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Create(pos[0])
		if err != nil {
			return fmt.Errorf("suppression export: %w", err)
		}
		defer f.Close()
		w = f
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("suppression export: %w", err)
	}
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		return f.Close()
	}
	return nil
}
