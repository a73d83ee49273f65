package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
)

// flowsCommands are the automation flow commands (package
// campaign/flow's API).
func flowsCommands() map[string]command {
	return map[string]command{
		"flows apply":   {usage: "FILE... (TOML flow definitions; each saved as the flow's next version)", run: flowsApply},
		"flows list":    {usage: "list flows (current versions)", run: flowsList},
		"flows stats":   {usage: "ID (counts per flow and step)", run: flowsStats},
		"flows journey": {usage: "EMAIL (what the flows did with a contact)", run: flowsJourney},
	}
}

func flowsApply(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	for _, path := range args {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		resp, err := e.rawRequest(ctx, "POST", "/api/v1/flows", "application/toml", f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var saved struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		}
		err = json.NewDecoder(resp.Body).Decode(&saved)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: decode answer: %w", path, err)
		}
		fmt.Fprintf(e.Out, "%s\tflow %s version %d\n", path, saved.ID, saved.Version)
	}
	return nil
}

func flowsList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var list struct {
		Flows []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Version int64  `json:"version"`
			Paused  bool   `json:"paused"`
			Trigger struct {
				Type string `json:"type"`
			} `json:"trigger"`
		} `json:"flows"`
	}
	if err := e.call(ctx, "GET", "/api/v1/flows", nil, &list); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(list)
	}
	for _, f := range list.Flows {
		state := "active"
		if f.Paused {
			state = "paused"
		}
		fmt.Fprintf(e.Out, "%s\tv%d\t%s\t%s\t%s\n", f.ID, f.Version, f.Trigger.Type, state, f.Name)
	}
	return nil
}

func flowsStats(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var st struct {
		Entered   int64                       `json:"entered"`
		Active    int64                       `json:"active"`
		Sent      int64                       `json:"sent"`
		Converted int64                       `json:"converted"`
		Waiting   map[string]int64            `json:"waiting"`
		Exited    map[string]int64            `json:"exited"`
		Steps     map[string]map[string]int64 `json:"steps"`
	}
	if err := e.call(ctx, "GET", "/api/v1/flows/"+url.PathEscape(args[0])+"/stats", nil, &st); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(st)
	}
	fmt.Fprintf(e.Out, "entered %d, active %d, sent %d, converted %d\n", st.Entered, st.Active, st.Sent, st.Converted)
	for _, k := range sortedKeys(st.Exited) {
		fmt.Fprintf(e.Out, "exited %s: %d\n", k, st.Exited[k])
	}
	for _, step := range sortedKeys(st.Steps) {
		fmt.Fprintf(e.Out, "step %s:", step)
		for _, k := range sortedKeys(st.Steps[step]) {
			fmt.Fprintf(e.Out, " %s %d", k, st.Steps[step][k])
		}
		if n := st.Waiting[step]; n > 0 {
			fmt.Fprintf(e.Out, " (waiting now %d)", n)
		}
		fmt.Fprintln(e.Out)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func flowsJourney(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var j struct {
		Journey []struct {
			At      string `json:"at"`
			Flow    string `json:"flow"`
			Version int64  `json:"version"`
			Step    string `json:"step"`
			Kind    string `json:"kind"`
			Detail  string `json:"detail"`
		} `json:"journey"`
	}
	if err := e.call(ctx, "GET", "/api/v1/flows/journey?email="+url.QueryEscape(args[0]), nil, &j); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(j)
	}
	for _, x := range j.Journey {
		fmt.Fprintf(e.Out, "%s\t%s v%d\t%s\t%s\t%s\n", x.At, x.Flow, x.Version, x.Step, x.Kind, x.Detail)
	}
	return nil
}
