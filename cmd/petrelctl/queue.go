package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// rcptInfo mirrors queue.RcptInfo's JSON.
type rcptInfo struct {
	MsgID       string    `json:"id"`
	Index       int       `json:"index"`
	Addr        string    `json:"recipient"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastReply   string    `json:"last_reply"`
	LastCode    int       `json:"last_code"`
	Enhanced    string    `json:"enhanced"`
	Reason      string    `json:"reason"`
	RemoteMX    string    `json:"remote_mx"`
}

func queueCommands() map[string]command {
	return map[string]command{
		"queue list":    {"list queued recipients (id, recipient, state, attempts, next attempt, last reply)", queueList},
		"queue show":    {"ID: show a message and its recipients", queueShow},
		"queue flush":   {"[--domain D]: retry every deferred recipient (of domain D) now", queueAction("flush")},
		"queue hold":    {"ID|--all: hold a message (or everything) from delivery", queueAction("hold")},
		"queue release": {"ID|--all: release held mail", queueAction("release")},
		"queue delete":  {"ID: delete a message", queueAction("delete")},
		"queue stats":   {"counts by state", queueStats},
	}
}

func queueList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var all []rcptInfo
	after := ""
	for {
		var page struct {
			Recipients []rcptInfo `json:"recipients"`
			Next       string     `json:"next"`
		}
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		if err := e.call(ctx, "GET", "/api/v1/queue?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		all = append(all, page.Recipients...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if e.JSON {
		return e.printJSON(all)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECIPIENT\tSTATE\tATTEMPTS\tNEXT ATTEMPT\tLAST REPLY")
	for _, r := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.MsgID, r.Addr, r.State, r.Attempts, when(r.NextAttempt), oneLine(r.LastReply))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "%d recipient(s) in queue\n", len(all))
	return nil
}

func queueShow(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/messages/"+url.PathEscape(args[0]), nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(append(raw, '\n'))
		return err
	}
	var m struct {
		ID         string     `json:"id"`
		From       string     `json:"from"`
		Stream     string     `json:"stream"`
		Campaign   string     `json:"campaign"`
		Size       int64      `json:"size"`
		Created    time.Time  `json:"created"`
		Recipients []rcptInfo `json:"recipients"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	fmt.Fprintf(e.Out, "id:       %s\nfrom:     <%s>\nstream:   %s\nsize:     %d bytes\ncreated:  %s\n", m.ID, m.From, m.Stream, m.Size, m.Created.Local().Format(time.RFC3339))
	if m.Campaign != "" {
		fmt.Fprintf(e.Out, "campaign: %s\n", m.Campaign)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPIENT\tSTATE\tATTEMPTS\tNEXT ATTEMPT\tREMOTE\tLAST REPLY")
	for _, r := range m.Recipients {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Addr, r.State, r.Attempts, when(r.NextAttempt), r.RemoteMX, oneLine(r.LastReply))
	}
	return tw.Flush()
}

func queueAction(action string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		body := map[string]any{}
		switch {
		case action == "flush" && len(args) == 0:
		case action == "flush" && len(args) == 2 && (args[0] == "--domain" || args[0] == "-domain") && args[1] != "":
			body["domain"] = args[1]
		case action == "flush" && len(args) == 1 && strings.HasPrefix(args[0], "--domain=") && len(args[0]) > len("--domain="):
			body["domain"] = strings.TrimPrefix(args[0], "--domain=")
		case (action == "hold" || action == "release") && len(args) == 1 && (args[0] == "--all" || args[0] == "-all"):
			body["all"] = true
		case action != "flush" && len(args) == 1 && !strings.HasPrefix(args[0], "-"):
			body["id"] = args[0]
		default:
			return errUsage
		}
		var out struct {
			Affected int `json:"affected"`
		}
		if err := e.call(ctx, "POST", "/api/v1/queue/"+action, body, &out); err != nil {
			return err
		}
		if e.JSON {
			return e.printJSON(out)
		}
		fmt.Fprintf(e.Out, "%s: %d recipient(s)\n", action, out.Affected)
		return nil
	}
}

func queueStats(ctx context.Context, e *env, args []string) error {
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/queue/stats", nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(append(raw, '\n'))
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		fmt.Fprintf(e.Out, "%-20s %v\n", k, m[k])
	}
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Until(t).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return "in " + d.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}
