package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/petrel-mta/petrel/bounce"
)

// bounceClassify classifies an SMTP reply (-reply), one message (FILE or
// - for standard input: a table, or JSON with -json) or, in batch mode
// (several FILEs or any DIR, walked recursively), every message as one
// JSON line.
func bounceClassify(_ context.Context, e *env, args []string) error {
	fl := flag.NewFlagSet("bounce classify", flag.ContinueOnError)
	fl.SetOutput(e.Err)
	reply := fl.String("reply", "", `classify this SMTP reply text instead of a file ("550 5.1.1 user unknown")`)
	rulesFile := fl.String("rules", "", "operator rules file merged over the shipped rules (as [bounce] rules_file)")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	rules := bounce.DefaultRules()
	if *rulesFile != "" {
		if rules, err = bounce.LoadRules(*rulesFile); err != nil {
			return err
		}
	}
	if *reply != "" {
		if len(pos) > 0 {
			return errUsage
		}
		c := rules.Classify(0, "", *reply)
		if e.JSON {
			return e.printJSON(c)
		}
		fmt.Fprintf(e.Out, "reason  %s\nstatus  %s\nhard    %v\ncode    %d\n", c.Reason, c.Status, c.Hard, c.Code)
		return nil
	}
	if len(pos) == 0 {
		return errUsage
	}
	if len(pos) > 1 || isDir(pos[0]) {
		return classifyBatch(e, rules, pos)
	}
	var raw []byte
	if pos[0] == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return fmt.Errorf("read message: %w", err)
	}
	rep, err := rules.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if e.JSON {
		return e.printJSON(reportJSON(rep))
	}
	fmt.Fprintf(e.Out, "kind                  %s\n", rep.Kind)
	for _, kv := range [][2]string{{"feedback type", rep.FeedbackType}, {"reporting MTA", rep.ReportingMTA},
		{"subject", rep.Subject}, {"original message-id", rep.OriginalMessageID},
		{"original return path", rep.OriginalReturnPath}, {"petrel id", rep.PetrelID}} {
		if kv[1] != "" {
			fmt.Fprintf(e.Out, "%-21s %s\n", kv[0], kv[1])
		}
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nRECIPIENT\tREASON\tSTATUS\tHARD\tCODE\tACTION\tREMOTE MTA\tDIAGNOSTIC")
	for _, b := range rep.Bounces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\t%s\t%s\n", b.Recipient, b.Reason, b.Status, b.Hard, b.ReplyCode,
			b.Action, b.RemoteMTA, oneLine(b.Diagnostic))
	}
	return tw.Flush()
}

// reportJSON is the JSON shape of a parsed report (field names in lower
// case, as the rest of the API).
func reportJSON(rep *bounce.Report) map[string]any {
	bounces := rep.Bounces
	if bounces == nil {
		bounces = []bounce.Bounce{}
	}
	return map[string]any{"kind": rep.Kind, "feedback_type": rep.FeedbackType,
		"reporting_mta": rep.ReportingMTA, "subject": rep.Subject, "original_message_id": rep.OriginalMessageID,
		"original_return_path": rep.OriginalReturnPath, "petrel_id": rep.PetrelID, "bounces": bounces}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// classifyBatch writes one JSON line per message under paths (files, or
// directories walked recursively in lexical order): the report with a
// "file" field, or {"file", "error"} for a file that cannot be read or
// parsed. Such files do not stop the batch; a path that does not exist
// does.
func classifyBatch(e *env, rules *bounce.Rules, paths []string) error {
	enc := json.NewEncoder(e.Out)
	one := func(path string) error {
		var line map[string]any
		raw, err := os.ReadFile(path)
		if err == nil {
			var rep *bounce.Report
			if rep, err = rules.Parse(raw); err == nil {
				line = reportJSON(rep)
			}
		}
		if err != nil {
			line = map[string]any{"error": err.Error()}
		}
		line["file"] = path
		return enc.Encode(line)
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return one(path)
		})
		if err != nil {
			return fmt.Errorf("bounce classify: %w", err)
		}
	}
	return nil
}
