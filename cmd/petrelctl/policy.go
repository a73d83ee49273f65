package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/petrel-mta/petrel/policy/shaping"
)

// policyCommands are the shaping commands: `policy status`.
func policyCommands() map[string]command {
	return map[string]command{
		"policy status": {
			usage: "effective shaping limits, active automation actions (with expiry) and warm-up counts",
			run:   policyStatus,
		},
	}
}

func policyStatus(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/policy/status", nil, &raw); err != nil {
		return err
	}
	var st shaping.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if e.JSON {
		return e.printJSON(st)
	}
	printPolicyStatus(e, st)
	return nil
}

// printPolicyStatus writes the three tables of a shaping status.
func printPolicyStatus(e *env, st shaping.Status) {
	tw := tabwriter.NewWriter(e.Out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSOURCE\tRULE\tCONNS\tMSGS/CONN\tMSG RATE\tCONN RATE\tSTATE")
	for _, l := range st.Limits {
		state := "ok"
		switch {
		case l.Bouncing:
			state = "bouncing"
		case l.Suspended:
			state = "suspended"
		case l.ThrottleFactor > 0:
			state = fmt.Sprintf("throttled x%.2f", l.ThrottleFactor)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%v\t%v\t%s\n", l.Stream, l.Source, l.Key,
			l.ActiveConnections, l.ConnectionLimit, l.MaxDeliveriesPerConnection,
			l.MaxMessageRate, l.MaxConnectionRate, state)
	}
	tw.Flush()
	fmt.Fprintln(e.Out)
	if len(st.Actions) == 0 {
		fmt.Fprintln(e.Out, "no active automation actions")
	} else {
		fmt.Fprintln(tw, "ACTION\tSTREAM\tSOURCE\tRULE\tUNTIL\tREMAINING\tREPLY")
		for _, a := range st.Actions {
			act := a.Action
			if a.Factor > 0 {
				act = fmt.Sprintf("%s x%.2f", a.Action, a.Factor)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", act, a.Stream, a.Source, a.Key,
				a.Until.Local().Format(time.DateTime), time.Until(a.Until).Round(time.Second), a.Reply)
		}
		tw.Flush()
	}
	if len(st.Warmup) > 0 {
		fmt.Fprintln(e.Out)
		fmt.Fprintln(tw, "WARM-UP SOURCE\tRULE\tDAY\tSENT/CAP")
		for _, w := range st.Warmup {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\n", w.Source, w.Rule, w.Day.Format(time.DateOnly), w.Sent, w.Cap)
		}
		tw.Flush()
	}
}
