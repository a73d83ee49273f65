// Command petrel-sendmail is a sendmail-compatible submission command for
// programs that hand mail to /usr/sbin/sendmail (cron, PHP mail(), git
// send-email, monitoring scripts). It reads one message from stdin and
// submits it to petreld, which queues it durably before petrel-sendmail
// exits 0.
//
//	petrel-sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [--server URL] [RECIPIENT...]
//
// Options (as Postfix's and Sendmail's sendmail):
//
//	-t          also take recipients from the To:, Cc: and Bcc: headers;
//	            Bcc: is removed from the message
//	-i, -oi     a line with a single "." does not end the message (read to EOF)
//	-f SENDER   envelope sender (also -fSENDER, -r SENDER); default USER@HOSTNAME
//	-F NAME     full name in the From: header added when the message has none
//	-bm         read mail from stdin and deliver it (the default mode)
//	-oX, -odX, -v, -N ..., -R ..., -V ...   accepted and ignored
//
// The daemon is --server URL or PETREL_SENDMAIL (default
// smtp://127.0.0.1:2525): smtp://HOST:PORT submits over SMTP, relayed
// as from a configured network ([smtp] mynetworks) or, with
// smtp://USER:PASSWORD@HOST:PORT or PETREL_SENDMAIL_USER and
// PETREL_SENDMAIL_PASSWORD, as an [[smtp.users]] user (AUTH PLAIN). A
// server off this machine must offer STARTTLS with a certificate valid
// for its name (nothing crosses the network in clear); http://HOST:PORT injects
// through the HTTP API with PETREL_API_KEY or, for a petreld on this
// machine, the key petreld generated into <PETREL_DATA_DIR or
// ./petrel-data>/api.key.
//
// Exit codes are sendmail's (sysexits.h): 64 usage, 65 bad message or
// address, 69 refused by petreld, 75 petreld unreachable or a temporary
// refusal (try again later), 0 accepted.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Exit codes from sysexits.h.
const (
	exOK          = 0
	exUsage       = 64
	exDataErr     = 65
	exUnavailable = 69
	exTempFail    = 75
)

// opts is the parsed command line.
type opts struct {
	extract  bool // -t
	ignoreDt bool // -i / -oi
	from     string
	fullName string
	server   string
	rcpts    []string
}

// exitError carries a sysexits code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stderr))
}

func run(ctx context.Context, argv []string, stdin io.Reader, stderr io.Writer) int {
	o, err := parseArgs(argv)
	if err == nil {
		err = submit(ctx, o, stdin)
	}
	if err == nil {
		return exOK
	}
	fmt.Fprintln(stderr, "petrel-sendmail:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exTempFail
}

// parseArgs parses sendmail's getopt-style options: clustered single
// letters (-ti), values attached or separate (-fuser, -f user).
func parseArgs(argv []string) (opts, error) {
	o := opts{server: os.Getenv("PETREL_SENDMAIL")}
	if o.server == "" {
		o.server = "smtp://127.0.0.1:2525"
	}
	value := func(i *int, attached string, flag string) (string, error) {
		if attached != "" {
			return attached, nil
		}
		if *i+1 >= len(argv) {
			return "", fail(exUsage, "option %s needs a value", flag)
		}
		*i++
		return argv[*i], nil
	}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, argv[i+1:]...)
			return o, nil
		case a == "--server" || strings.HasPrefix(a, "--server="):
			v, err := value(&i, strings.TrimPrefix(strings.TrimPrefix(a, "--server"), "="), "--server")
			if err != nil {
				return o, err
			}
			o.server = v
			continue
		case !strings.HasPrefix(a, "-") || a == "-":
			o.rcpts = append(o.rcpts, a)
			continue
		}
	letters:
		for j := 1; j < len(a); j++ {
			rest := a[j+1:]
			switch c := a[j]; c {
			case 't':
				o.extract = true
			case 'i':
				o.ignoreDt = true
			case 'v', 'm', 'n', 'U':
				// verbose, me-too, no aliasing, initial submission: nothing to do.
			case 'f', 'r', 'F', 'N', 'R', 'V', 'X', 'q', 'C', 'B', 'L', 'h', 'p':
				v, err := value(&i, rest, "-"+string(c))
				if err != nil {
					return o, err
				}
				switch c {
				case 'f', 'r':
					o.from = v
				case 'F':
					o.fullName = v
				}
				break letters
			case 'o':
				if rest == "i" {
					o.ignoreDt = true
				}
				break letters // -oX options: only -oi means something here
			case 'b':
				if rest != "m" && rest != "" {
					return o, fail(exUsage, "mode -b%s is not supported (only -bm, reading a message from stdin)", rest)
				}
				break letters
			case 'd', 'O':
				break letters
			default:
				return o, fail(exUsage, "unknown option -%c", c)
			}
		}
	}
	return o, nil
}

// readMessage reads stdin; without -i a line holding only "." ends it.
func readMessage(r io.Reader, ignoreDots bool) ([]byte, error) {
	if ignoreDots {
		return io.ReadAll(r)
	}
	var buf bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if t := bytes.TrimRight(line, "\r\n"); string(t) == "." && (err == nil || len(line) > 0) {
			return buf.Bytes(), nil
		}
		buf.Write(line)
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// splitHeader returns the header block (with its final line end) and the
// body; a message without a blank line is all header.
func splitHeader(msg []byte) (header, body []byte) {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return msg, nil
		}
		line := msg[i : i+j+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return msg[:i], msg[i:]
		}
		i += j + 1
	}
	return msg, nil
}

// prepare applies -t (collect To/Cc/Bcc, drop Bcc) and adds a From:
// header from the sender (and -F) when the message has none. It returns
// the message to submit and the full recipient list.
func prepare(o opts, sender string, msg []byte) ([]byte, []string, error) {
	header, body := splitHeader(msg)
	parsed, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, header...), '\n')))
	if err != nil {
		return nil, nil, fail(exDataErr, "message header: %w", err)
	}
	rcpts := append([]string{}, o.rcpts...)
	if o.extract {
		for _, f := range []string{"To", "Cc", "Bcc"} {
			if parsed.Header.Get(f) == "" {
				continue
			}
			list, err := parsed.Header.AddressList(f)
			if err != nil {
				return nil, nil, fail(exDataErr, "%s: header: %w", f, err)
			}
			for _, a := range list {
				rcpts = append(rcpts, a.Address)
			}
		}
		header = dropField(header, "Bcc")
	}
	if parsed.Header.Get("From") == "" {
		from := (&mail.Address{Name: o.fullName, Address: sender}).String()
		header = append([]byte("From: "+from+"\n"), header...)
	}
	seen := map[string]bool{}
	var uniq []string
	for _, r := range rcpts {
		if a, err := mail.ParseAddress(r); err == nil {
			r = a.Address
		} else if !strings.Contains(r, "@") {
			return nil, nil, fail(exDataErr, "recipient %q: %w", r, err)
		}
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			uniq = append(uniq, r)
		}
	}
	if len(uniq) == 0 {
		return nil, nil, fail(exUsage, "no recipients (give addresses or -t with To:/Cc:/Bcc: headers)")
	}
	return append(header, body...), uniq, nil
}

// dropField removes every field named name (with its continuation
// lines) from a header block.
func dropField(header []byte, name string) []byte {
	var out []byte
	skipping := false
	for _, line := range bytes.SplitAfter(header, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				out = append(out, line...)
			}
			continue
		}
		k, _, _ := bytes.Cut(line, []byte(":"))
		skipping = strings.EqualFold(strings.TrimSpace(string(k)), name)
		if !skipping {
			out = append(out, line...)
		}
	}
	return out
}

// defaultSender is USER@HOSTNAME, as sendmail's.
func defaultSender() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if name == "" {
		name = "nobody"
	}
	if host == "" {
		host = "localhost"
	}
	return name + "@" + host
}

func submit(ctx context.Context, o opts, stdin io.Reader) error {
	msg, err := readMessage(stdin, o.ignoreDt)
	if err != nil {
		return fail(exDataErr, "read message: %w", err)
	}
	sender := o.from
	if sender == "" {
		sender = defaultSender()
	}
	if sender == "<>" {
		sender = ""
	}
	msg, rcpts, err := prepare(o, sender, msg)
	if err != nil {
		return err
	}
	u, err := url.Parse(o.server)
	if err != nil || u.Host == "" {
		return fail(exUsage, "server %q must be smtp://HOST:PORT or http://HOST:PORT", o.server)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	switch u.Scheme {
	case "smtp":
		return submitSMTP(ctx, u, sender, rcpts, msg)
	case "http", "https":
		return submitHTTP(ctx, u, sender, rcpts, msg)
	}
	return fail(exUsage, "server %q: scheme must be smtp, http or https", o.server)
}

// smtpExit maps an SMTP refusal to sendmail's exit code.
func smtpExit(step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Temporary() {
			return fail(exTempFail, "%s: %w", step, err)
		}
		return fail(exUnavailable, "%s: %w", step, err)
	}
	return fail(exTempFail, "%s: %w", step, err)
}

// loopbackHost reports whether h is "localhost" or a loopback address.
func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// smtpCredentials returns the AUTH user and password: the URL's userinfo,
// else PETREL_SENDMAIL_USER / PETREL_SENDMAIL_PASSWORD (which keep the
// password out of the process list); "" for no AUTH.
func smtpCredentials(u *url.URL) (user, pass string) {
	if u.User != nil {
		p, _ := u.User.Password()
		return u.User.Username(), p
	}
	return os.Getenv("PETREL_SENDMAIL_USER"), os.Getenv("PETREL_SENDMAIL_PASSWORD")
}

func submitSMTP(ctx context.Context, u *url.URL, sender string, rcpts []string, msg []byte) error {
	addr := u.Host
	conn, err := (&net.Dialer{Timeout: 30 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(exTempFail, "petreld at %s unreachable: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Off this machine the session must use STARTTLS (the certificate
	// must verify for the server's name): neither the password nor the
	// message crosses the network in clear text.
	var c *smtp.Client
	if loopbackHost(u.Hostname()) {
		c = smtp.NewClient(conn)
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		if err := c.Hello(host); err != nil {
			c.Close()
			return smtpExit("EHLO", err)
		}
	} else {
		c, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if err != nil {
			conn.Close()
			return fail(exTempFail, "STARTTLS with %s (required off this machine): %w", addr, err)
		}
	}
	defer c.Close()
	if user, pass := smtpCredentials(u); user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			return smtpExit("AUTH", err)
		}
	}
	if err := c.Mail(sender, nil); err != nil {
		return smtpExit("MAIL FROM", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return smtpExit("RCPT TO:<"+r+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpExit("DATA", err)
	}
	// go-smtp's DATA writer dot-stuffs and turns bare LF into CRLF.
	if _, err := w.Write(msg); err != nil {
		return smtpExit("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpExit("end of DATA", err)
	}
	if err := c.Quit(); err != nil {
		return nil // the message was accepted with the 250 to DATA
	}
	return nil
}

func submitHTTP(ctx context.Context, u *url.URL, sender string, rcpts []string, msg []byte) error {
	key := os.Getenv("PETREL_API_KEY")
	if key == "" {
		if !loopbackHost(u.Hostname()) {
			return fail(exUsage, "no API key for %s: set PETREL_API_KEY (the local api.key is only sent to a petreld on this machine)", u.Redacted())
		}
		dir := os.Getenv("PETREL_DATA_DIR")
		if dir == "" {
			dir = "petrel-data"
		}
		b, err := os.ReadFile(filepath.Join(dir, "api.key"))
		if err != nil {
			return fail(exUsage, "no API key: set PETREL_API_KEY or PETREL_DATA_DIR (%w)", err)
		}
		key = strings.TrimSpace(string(b))
	}
	body, err := json.Marshal(map[string]any{"from": sender, "to": rcpts, "raw": string(msg)})
	if err != nil {
		return fail(exDataErr, "encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(u.String(), "/")+"/api/v1/messages", bytes.NewReader(body))
	if err != nil {
		return fail(exUsage, "request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(exTempFail, "petreld at %s unreachable: %w", u.Host, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	msgText := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		msgText = e.Error.Code + ": " + e.Error.Message
	}
	code := exUnavailable
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		code = exTempFail
	case resp.StatusCode == http.StatusUnprocessableEntity || resp.StatusCode == http.StatusBadRequest:
		code = exDataErr
	}
	return fail(code, "petreld answered %d %s", resp.StatusCode, msgText)
}
