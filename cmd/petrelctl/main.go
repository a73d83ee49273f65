// Command petrelctl is Petrel's operator CLI. It talks to petreld's HTTP
// admin API with the same bearer API keys apps use.
//
//	petrelctl [-url http://127.0.0.1:8025] [-key KEY] [-json] COMMAND ...
//
// The key may also come from PETREL_API_KEY and the URL from PETREL_URL.
// Without a key, petrelctl reads the one petreld generates when its config
// lists no API keys: <data dir>/api.key, the data dir being -data-dir,
// PETREL_DATA_DIR or ./petrel-data (the embedded default).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// env is what every subcommand gets: the API endpoint, output mode and
// streams.
type env struct {
	URL  string
	Key  string
	JSON bool
	Out  io.Writer
	Err  io.Writer
	HTTP *http.Client
	// keyFile is where Key came from when petrelctl read petreld's local
	// key file; keyErr, when set, refuses every API call (no usable key).
	keyFile string
	keyErr  error
}

// command is one subcommand: name (possibly "group sub"), usage and run.
type command struct {
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

// commands lists every subcommand by its words ("queue list").
func commands() map[string]command {
	m := map[string]command{}
	for _, group := range []map[string]command{queueCommands(), extraCommands(), eventsCommands(), docCommands(), contactsCommands(), flowsCommands(), campaignCommands()} {
		for k, v := range group {
			m[k] = v
		}
	}
	return m
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	return runClient(ctx, argv, stdout, stderr, &http.Client{Timeout: 5 * time.Minute})
}

// runClient is run with the HTTP client to reach petreld with.
func runClient(ctx context.Context, argv []string, stdout, stderr io.Writer, hc *http.Client) int {
	fs := flag.NewFlagSet("petrelctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &env{Out: stdout, Err: stderr, HTTP: hc}
	fs.StringVar(&e.URL, "url", envOr("PETREL_URL", "http://127.0.0.1:8025"), "petreld HTTP API base URL")
	fs.StringVar(&e.Key, "key", os.Getenv("PETREL_API_KEY"), "API key (or PETREL_API_KEY)")
	fs.BoolVar(&e.JSON, "json", false, "print JSON for scripts")
	dataDir := fs.String("data-dir", envOr("PETREL_DATA_DIR", "petrel-data"), "petreld's data_dir, for its generated api.key when no -key is given")
	cmds := commands()
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: petrelctl [-url URL] [-key KEY] [-json] COMMAND [ARGS]\n\ncommands:")
		var names []string
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-22s %s\n", n, cmds[n].usage)
		}
	}
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	e.localKey(*dataDir)
	args := fs.Args()
	// Allow -json after the command words too.
	var rest []string
	for _, a := range args {
		if a == "-json" || a == "--json" {
			e.JSON = true
			continue
		}
		rest = append(rest, a)
	}
	args = rest
	for n := 2; n >= 1; n-- {
		if len(args) < n {
			continue
		}
		if c, ok := cmds[strings.Join(args[:n], " ")]; ok {
			if err := c.run(ctx, e, args[n:]); err != nil {
				fmt.Fprintln(stderr, "petrelctl:", err)
				return 1
			}
			return 0
		}
	}
	fs.Usage()
	return 2
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// apiError is the daemon's JSON error body.
type apiError struct {
	Status int
	Code   string `json:"code"`
	Msg    string `json:"message"`
}

func (a *apiError) Error() string { return fmt.Sprintf("%d %s: %s", a.Status, a.Code, a.Msg) }

// call performs one API request. in (if non-nil) is sent as JSON; out (if
// non-nil) receives the JSON answer.
func (e *env) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := e.rawRequest(ctx, method, path, ct, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], data...)
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// rawRequest performs one API request with the key and returns the
// response of a 2xx answer (the caller closes its body); other answers
// become an *apiError.
func (e *env) rawRequest(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	if e.keyErr != nil {
		return nil, e.keyErr
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(e.URL, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if e.Key != "" {
		req.Header.Set("Authorization", "Bearer "+e.Key)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("petreld unreachable: %w", err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var w struct {
		Error apiError `json:"error"`
	}
	ae := &apiError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Msg: strings.TrimSpace(string(data))}
	if json.Unmarshal(data, &w) == nil && w.Error.Code != "" {
		w.Error.Status = resp.StatusCode
		ae = &w.Error
	}
	if resp.StatusCode == http.StatusUnauthorized && e.keyFile != "" {
		return nil, fmt.Errorf("%w (the key was read from %s: is %s the petreld that wrote it? give -key or the daemon's -data-dir)", ae, e.keyFile, e.URL)
	}
	return nil, ae
}

// localKey sets e.Key from <dataDir>/api.key when no key was given. The
// file is petreld's key for this machine, so it is only sent to a daemon
// on a loopback address: with -url naming another host petrelctl says
// it needs -key instead of handing that host the local key.
func (e *env) localKey(dataDir string) {
	if e.Key != "" {
		return
	}
	path := filepath.Join(dataDir, "api.key")
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if !loopbackURL(e.URL) {
		e.keyErr = fmt.Errorf("no API key for %s: give -key or PETREL_API_KEY (the local key in %s is only sent to a petreld on this machine)", e.URL, path)
		return
	}
	e.Key, e.keyFile = strings.TrimSpace(string(b)), path
}

// loopbackURL reports whether u's host is a loopback address or
// "localhost".
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// printJSON writes v indented.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

var errUsage = errors.New("wrong arguments (see petrelctl -h)")

func sortStrings(s []string) { sort.Strings(s) }
