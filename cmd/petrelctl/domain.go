package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"
)

// domainRecord mirrors domains.Check's JSON.
type domainRecord struct {
	Kind   string   `json:"kind"`
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Value  string   `json:"value"`
	Zone   string   `json:"zone"`
	Warn   string   `json:"warning,omitempty"`
	State  string   `json:"state"`
	Found  []string `json:"found"`
	Detail string   `json:"detail"`
}

// domainInfo mirrors policy.DomainInfo's JSON.
type domainInfo struct {
	Domain  string         `json:"domain"`
	Status  string         `json:"status"`
	Records []domainRecord `json:"records"`
	Last    *struct {
		Checked time.Time      `json:"checked"`
		Checks  []domainRecord `json:"checks"`
	} `json:"last_check"`
}

func domainCommands() map[string]command {
	return map[string]command{
		"domain add":   {"DOMAIN [-algo rsa|ed25519] [-dual]: register a sending domain, generate its DKIM key, print the DNS records to publish", domainAdd},
		"domain check": {"DOMAIN: look the records up now; each ok/missing/wrong, status unverified/usable/verified", domainCheck},
		"domain show":  {"DOMAIN: records to publish and the last check", domainShow},
		"domain list":  {"sending domains and their status", domainList},
	}
}

func domainAdd(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("domain add", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	algo := fs.String("algo", "rsa", "DKIM key algorithm: rsa (2048 bits) or ed25519")
	dual := fs.Bool("dual", false, "generate both an RSA (s1) and an Ed25519 (e1) key and sign with both")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	var info domainInfo
	if err := e.call(ctx, http.MethodPost, "/api/v1/domains", map[string]any{"domain": pos[0], "algorithm": *algo, "dual": *dual}, &info); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(info)
	}
	fmt.Fprintf(e.Out, "%s registered (status %s). Publish these records:\n\n", info.Domain, info.Status)
	printRecords(e, info.Records, "")
	fmt.Fprintf(e.Out, "\nthen run: petrelctl domain check %s\n", info.Domain)
	return nil
}

// printRecords prints records as zone-file lines (indented by indent),
// each followed by its warning as a zone-file comment, and repeats the
// warnings on stderr so they are seen when stdout goes to a file.
func printRecords(e *env, recs []domainRecord, indent string) {
	for _, r := range recs {
		if r.Zone == "" {
			fmt.Fprintf(e.Out, "%s; %s: %s\n", indent, r.Kind, r.Value)
		} else {
			fmt.Fprintln(e.Out, indent+r.Zone)
		}
		if r.Warn != "" {
			fmt.Fprintf(e.Out, "%s; warning: %s\n", indent, r.Warn)
			fmt.Fprintf(e.Err, "petrelctl: warning: %s record: %s\n", r.Kind, r.Warn)
		}
	}
}

func domainGet(ctx context.Context, e *env, args []string, check bool) error {
	if len(args) != 1 {
		return errUsage
	}
	var info domainInfo
	path := "/api/v1/domains/" + url.PathEscape(args[0])
	method := http.MethodGet
	if check {
		path, method = path+"/check", http.MethodPost
	}
	if err := e.call(ctx, method, path, nil, &info); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(info)
	}
	fmt.Fprintf(e.Out, "%s: %s\n", info.Domain, info.Status)
	if info.Last == nil {
		fmt.Fprintln(e.Out, "not checked yet; records to publish:")
		printRecords(e, info.Records, "  ")
		return nil
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORD\tNAME\tSTATE\tDETAIL")
	for _, c := range info.Last.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Kind, c.Name, c.State, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range info.Last.Checks {
		if c.State != "ok" && c.Zone != "" {
			fmt.Fprintf(e.Out, "expected: %s\n", c.Zone)
		}
	}
	fmt.Fprintf(e.Out, "checked %s\n", info.Last.Checked.Local().Format(time.DateTime))
	return nil
}

func domainCheck(ctx context.Context, e *env, args []string) error {
	return domainGet(ctx, e, args, true)
}

func domainShow(ctx context.Context, e *env, args []string) error {
	return domainGet(ctx, e, args, false)
}

func domainList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var out struct {
		Domains []domainInfo `json:"domains"`
	}
	if err := e.call(ctx, http.MethodGet, "/api/v1/domains", nil, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out.Domains)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSTATUS\tCHECKED")
	for _, d := range out.Domains {
		checked := "never"
		if d.Last != nil {
			checked = d.Last.Checked.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Domain, d.Status, checked)
	}
	return tw.Flush()
}
