package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// eventsCommands are the event, bounce, stats and stream commands.
func eventsCommands() map[string]command {
	return map[string]command{
		"events tail":       {"[-f] [-type T] [-since 1h] [-recipient A] [-campaign C]: print events (-f: follow)", eventsTail},
		"bounce classify":   {"FILE|DIR...|- | -reply \"550 5.1.1 ...\": classify raw bounces/reports (several or a directory: one JSON line each) or an SMTP reply (local)", bounceClassify},
		"stats":             {"per stream and provider: sent, delivered, bounced, complaints and rates", statsCmd},
		"streams resume":    {"STREAM: resume a stream paused by an alarm", streamsResume},
		"reputation check":  {"check every egress IP and sending/tracking domain on the blocklists now", reputationCmd(true)},
		"reputation status": {"the last blocklist results (listed first)", reputationCmd(false)},
		"webhooks":          {"webhook delivery state (delivered, failures, lag, last error)", webhooksCmd},
	}
}

// eventRow mirrors queue.Event's JSON.
type eventRow struct {
	Seq       string    `json:"seq"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	MsgID     string    `json:"message_id"`
	Recipient string    `json:"recipient"`
	Stream    string    `json:"stream"`
	RemoteMX  string    `json:"remote_mx"`
	Reply     string    `json:"reply"`
	Reason    string    `json:"reason"`
}

// tailPoll is how often events tail -f asks for new events.
const tailPoll = time.Second

func eventsTail(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("events tail", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	follow := fs.Bool("f", false, "follow: keep printing new events")
	typ := fs.String("type", "", "only this event type")
	since := fs.String("since", "1h", "start this long ago (duration, RFC 3339 or Unix seconds; empty: oldest)")
	rcpt := fs.String("recipient", "", "only this recipient")
	campaign := fs.String("campaign", "", "only this campaign")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return errUsage
	}
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		} else if *since != "" {
			q.Set("since", *since)
		}
		for k, v := range map[string]string{"type": *typ, "recipient": *rcpt, "campaign": *campaign} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := e.call(ctx, "GET", "/api/v1/events?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		for _, raw := range page.Events {
			var ev eventRow
			if err := json.Unmarshal(raw, &ev); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			after = ev.Seq
			if e.JSON {
				fmt.Fprintf(e.Out, "%s\n", raw)
				continue
			}
			detail := ev.Reason
			if ev.Reply != "" {
				detail = strings.TrimSpace(detail + " " + oneLine(ev.Reply))
			}
			fmt.Fprintf(e.Out, "%s %-10s %-12s %s %s %s\n", ev.Time.Local().Format("2006-01-02 15:04:05"),
				ev.Type, ev.Stream, ev.MsgID, ev.Recipient, detail)
		}
		if len(page.Events) == 1000 {
			continue
		}
		if !*follow {
			return nil
		}
		if after == "" {
			// Nothing yet: keep the time window from moving on.
			*since = time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(tailPoll):
		}
	}
}

// statCounts mirrors events' counts JSON.
type statCounts struct {
	Sent          int64   `json:"sent"`
	Delivered     int64   `json:"delivered"`
	Bounced       int64   `json:"bounced"`
	Complained    int64   `json:"complained"`
	Deferred      int64   `json:"deferred"`
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
}

func statsCmd(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/stats", nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(append(raw, '\n'))
		return err
	}
	var st struct {
		Window  string `json:"window"`
		Streams []struct {
			Stream string `json:"stream"`
			statCounts
			Alarms    []string `json:"alarms"`
			Paused    bool     `json:"paused"`
			Providers []struct {
				Provider string `json:"provider"`
				statCounts
			} `json:"providers"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	fmt.Fprintf(e.Out, "window %s\n", st.Window)
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tPROVIDER\tSENT\tDELIVERED\tBOUNCED\tCOMPLAINTS\tDEFERRED\tBOUNCE RATE\tCOMPLAINT RATE\tSTATE")
	row := func(stream, prov string, c statCounts, state string) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.2f%%\t%.3f%%\t%s\n", stream, prov, c.Sent, c.Delivered,
			c.Bounced, c.Complained, c.Deferred, 100*c.BounceRate, 100*c.ComplaintRate, state)
	}
	for _, s := range st.Streams {
		state := "ok"
		if len(s.Alarms) > 0 {
			state = "alarm:" + strings.Join(s.Alarms, ",")
		}
		if s.Paused {
			state += " paused"
		}
		row(s.Stream, "*", s.statCounts, state)
		for _, p := range s.Providers {
			row(s.Stream, p.Provider, p.statCounts, "")
		}
	}
	return tw.Flush()
}

func streamsResume(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return errUsage
	}
	var out struct {
		WasPaused bool `json:"was_paused"`
	}
	if err := e.call(ctx, "POST", "/api/v1/streams/"+url.PathEscape(args[0])+"/resume", nil, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	if out.WasPaused {
		fmt.Fprintf(e.Out, "stream %s resumed\n", args[0])
	} else {
		fmt.Fprintf(e.Out, "stream %s was not paused\n", args[0])
	}
	return nil
}

func webhooksCmd(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	var raw json.RawMessage
	if err := e.call(ctx, "GET", "/api/v1/webhooks", nil, &raw); err != nil {
		return err
	}
	if e.JSON {
		_, err := e.Out.Write(append(raw, '\n'))
		return err
	}
	var out struct {
		Webhooks []struct {
			Name      string  `json:"name"`
			URL       string  `json:"url"`
			Delivered int64   `json:"delivered"`
			Failed    int64   `json:"failed_attempts"`
			Lag       float64 `json:"lag_seconds"`
			LastError string  `json:"last_error"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tDELIVERED\tFAILED\tLAG\tLAST ERROR")
	for _, w := range out.Webhooks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0fs\t%s\n", w.Name, w.URL, w.Delivered, w.Failed, w.Lag, oneLine(w.LastError))
	}
	return tw.Flush()
}
