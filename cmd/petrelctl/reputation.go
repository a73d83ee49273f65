package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// reputationReport mirrors reputation.Report's JSON.
type reputationReport struct {
	Listed  int `json:"listed"`
	Results []struct {
		Kind     string    `json:"kind"`
		Target   string    `json:"target"`
		List     string    `json:"list"`
		Listed   bool      `json:"listed"`
		Codes    []string  `json:"codes"`
		Meanings []string  `json:"meanings"`
		Refused  bool      `json:"refused"`
		Error    string    `json:"error"`
		Checked  time.Time `json:"checked"`
		Since    time.Time `json:"since"`
	} `json:"results"`
}

// reputationCheck checks every egress IP and sending domain on the
// blocklists now (reputation check) or prints the last results
// (reputation status).
func reputationCmd(now bool) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) > 0 {
			return errUsage
		}
		var rep reputationReport
		method, path := "GET", "/api/v1/stats/reputation"
		if now {
			method, path = "POST", "/api/v1/reputation/check"
		}
		if err := e.call(ctx, method, path, nil, &rep); err != nil {
			return err
		}
		if e.JSON {
			return e.printJSON(rep)
		}
		tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tTARGET\tLIST\tSTATE\tDETAIL")
		for _, r := range rep.Results {
			state, detail := "clean", ""
			switch {
			case r.Listed:
				state = "LISTED"
				var parts []string
				for i, c := range r.Codes {
					parts = append(parts, c+" "+r.Meanings[i])
				}
				detail = strings.Join(parts, "; ") + " since " + r.Since.UTC().Format(time.RFC3339)
			case r.Refused:
				state, detail = "refused", r.Error
			case r.Error != "":
				state, detail = "error", r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Target, r.List, state, detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.Out, "%d listed of %d checks\n", rep.Listed, len(rep.Results))
		return nil
	}
}
