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
)

// campaignCommands are the campaign and template commands (package
// campaign's API).
func campaignCommands() map[string]command {
	action := func(name string) command {
		return command{usage: "ID", run: func(ctx context.Context, e *env, args []string) error { return campaignAction(ctx, e, name, args) }}
	}
	return map[string]command{
		"campaigns list":     {usage: "[--status S] [--limit N] [--after CURSOR]", run: campaignsList},
		"campaigns show":     {usage: "ID", run: campaignsShow},
		"campaigns create":   {usage: "SPEC.json|- (the campaign as JSON: id, audience, segment, template or subject/html/text, from, postal_address, schedule, ab, ...)", run: campaignsCreate},
		"campaigns schedule": {usage: "ID --at YYYY-MM-DDTHH:MM [--tz IANA-ZONE]", run: campaignsSchedule},
		"campaigns send":     action("send"),
		"campaigns pause":    action("pause"),
		"campaigns resume":   action("resume"),
		"campaigns cancel":   action("cancel"),
		"campaigns check":    {usage: "ID (exit status 1 when the check blocks the send)", run: campaignsCheck},
		"campaigns test":     {usage: "ID ADDRESS... (a marked test send, not counted)", run: campaignsTest},
		"templates save":     {usage: "TEMPLATE.json|- (call_name, name, type, subject, preheader, html, text, variables): a new version", run: templatesSave},
		"templates show":     {usage: "CALL_NAME [--version N]", run: templatesShow},
	}
}

type campaignSummaryJSON struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Error    string `json:"error"`
	Subject  string `json:"subject"`
	Progress struct {
		Sent    int64            `json:"sent"`
		Skipped map[string]int64 `json:"skipped"`
	} `json:"progress"`
	ScheduledAt string `json:"scheduled_at"`
}

func (c campaignSummaryJSON) line() string {
	skipped := int64(0)
	for _, n := range c.Progress.Skipped {
		skipped += n
	}
	s := fmt.Sprintf("%s\t%s\tsent %d, skipped %d", c.ID, c.Status, c.Progress.Sent, skipped)
	if c.ScheduledAt != "" && c.Status == "scheduled" {
		s += "\tat " + c.ScheduledAt
	}
	if c.Error != "" {
		s += "\t" + c.Error
	}
	return s
}

func campaignsList(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("campaigns list", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	status := fs.String("status", "", "only campaigns in this status")
	limit := fs.Int("limit", 50, "page size")
	after := fs.String("after", "", "cursor from the previous page")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) != 0 {
		return errUsage
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *status != "" {
		q.Set("status", *status)
	}
	if *after != "" {
		q.Set("after", *after)
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/campaigns?"+q.Encode(), nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(raw)
		return err
	}
	var page struct {
		Campaigns []campaignSummaryJSON `json:"campaigns"`
		Next      string                `json:"next"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, c := range page.Campaigns {
		fmt.Fprintln(e.Out, c.line())
	}
	if page.Next != "" {
		fmt.Fprintf(e.Err, "more: --after %s\n", page.Next)
	}
	return nil
}

// printCampaign prints a campaign answer (raw JSON with -json).
func printCampaign(e *env, raw json.RawMessage) error {
	if e.JSON {
		_, err := e.Out.Write(raw)
		return err
	}
	var c campaignSummaryJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	var full struct {
		Spec struct {
			ID string `json:"id"`
		} `json:"spec"`
	}
	if json.Unmarshal(raw, &full) == nil && c.ID == "" {
		c.ID = full.Spec.ID
	}
	fmt.Fprintln(e.Out, c.line())
	return nil
}

func campaignsShow(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/campaigns/"+url.PathEscape(args[0]), nil, &raw); err != nil {
		return err
	}
	return printCampaign(e, raw)
}

// readJSONArg reads a JSON document from a file, or stdin for "-".
func readJSONArg(name string) (json.RawMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not valid JSON", name)
	}
	return json.RawMessage(b), nil
}

func campaignsCreate(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	spec, err := readJSONArg(args[0])
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := e.call(ctx, "POST", "/api/v1/campaigns", spec, &raw); err != nil {
		return err
	}
	return printCampaign(e, raw)
}

func campaignsSchedule(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("campaigns schedule", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	at := fs.String("at", "", "local wall time YYYY-MM-DDTHH:MM[:SS], or RFC 3339 with an offset")
	tz := fs.String("tz", "", "IANA time zone of --at (default UTC)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 || *at == "" {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "POST", "/api/v1/campaigns/"+url.PathEscape(pos[0])+"/schedule", map[string]string{"send_at": *at, "time_zone": *tz}, &raw); err != nil {
		return err
	}
	return printCampaign(e, raw)
}

func campaignAction(ctx context.Context, e *env, action string, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "POST", "/api/v1/campaigns/"+url.PathEscape(args[0])+"/"+action, nil, &raw); err != nil {
		return err
	}
	return printCampaign(e, raw)
}

func campaignsCheck(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "POST", "/api/v1/campaigns/"+url.PathEscape(args[0])+"/check", nil, &raw); err != nil {
		return err
	}
	var res struct {
		OK    bool `json:"ok"`
		Items []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Detail string `json:"detail"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if e.JSON {
		if _, err := e.Out.Write(raw); err != nil {
			return err
		}
	} else {
		for _, it := range res.Items {
			fmt.Fprintf(e.Out, "%s\t%s\t%s\n", it.Status, it.Name, it.Detail)
		}
	}
	if !res.OK {
		return fmt.Errorf("the pre-send check blocks sending %s", args[0])
	}
	return nil
}

func campaignsTest(ctx context.Context, e *env, args []string) error {
	if len(args) < 2 {
		return errUsage
	}
	var out struct {
		Results []struct {
			To      string `json:"to"`
			QueueID string `json:"queue_id"`
			Error   string `json:"error"`
		} `json:"results"`
	}
	if err := e.call(ctx, "POST", "/api/v1/campaigns/"+url.PathEscape(args[0])+"/test", map[string]any{"to": args[1:]}, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	failed := 0
	for _, r := range out.Results {
		if r.Error != "" {
			failed++
			fmt.Fprintf(e.Out, "%s\tnot queued: %s\n", r.To, r.Error)
		} else {
			fmt.Fprintf(e.Out, "%s\tqueued %s\n", r.To, r.QueueID)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d test messages not queued", failed)
	}
	return nil
}

func templatesSave(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	tpl, err := readJSONArg(args[0])
	if err != nil {
		return err
	}
	var out struct {
		CallName string   `json:"call_name"`
		Version  int64    `json:"version"`
		Warnings []string `json:"warnings"`
	}
	if err := e.call(ctx, "POST", "/api/v1/templates", tpl, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Out, "template %s version %d\n", out.CallName, out.Version)
	for _, w := range out.Warnings {
		fmt.Fprintf(e.Err, "warning: %s\n", w)
	}
	return nil
}

func templatesShow(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("templates show", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	version := fs.Int64("version", 0, "a version (default the latest)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	path := "/api/v1/templates/" + url.PathEscape(pos[0])
	var raw json.RawMessage
	if *version > 0 {
		var vs struct {
			Versions []json.RawMessage `json:"versions"`
		}
		if err := e.call(ctx, "GET", path+"/versions", nil, &vs); err != nil {
			return err
		}
		if *version > int64(len(vs.Versions)) {
			return fmt.Errorf("template %s has %d versions", pos[0], len(vs.Versions))
		}
		raw = vs.Versions[*version-1]
	} else if err := e.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(raw)
		return err
	}
	var tp struct {
		CallName string `json:"call_name"`
		Version  int64  `json:"version"`
		Type     string `json:"type"`
		Subject  string `json:"subject"`
	}
	if err := json.Unmarshal(raw, &tp); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(e.Out, "%s\tversion %d\t%s\t%s\n", tp.CallName, tp.Version, tp.Type, tp.Subject)
	return nil
}
