package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sinkCommands is the local test sink: an SMTP server that accepts every
// message and prints (and optionally stores) it, for the README quick
// start and development, where a [[transport]] routes all mail to it
// (dist/petrel.dev.toml) instead of the recipients' MX hosts.
func sinkCommands() map[string]command {
	return map[string]command{
		"sink": {"[-listen 127.0.0.1:2526] [-dir DIR]: local SMTP test sink: accept every message, print one line each (and store it as DIR/*.eml)", sinkRun},
	}
}

func sinkRun(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	listen := fs.String("listen", "127.0.0.1:2526", "SMTP listen address")
	dir := fs.String("dir", "", "store every message as DIR/<time>-<n>.eml")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 0 {
		return errUsage
	}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o750); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	s := &sink{e: e, dir: *dir}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.petrel.localhost"
	srv.MaxMessageBytes = 64 << 20
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Minute, time.Minute
	srv.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(e.Err, nil)).Handler(), slog.LevelDebug)
	s.printf("sink: listening on %s (every message is accepted%s)", ln.Addr(), map[bool]string{true: " and stored in " + *dir, false: ""}[*dir != ""])
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-done
		return nil
	case err := <-done:
		if errors.Is(err, smtp.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("sink: %w", err)
	}
}

// sink is the go-smtp backend of `petrelctl sink`.
type sink struct {
	e   *env
	dir string
	mu  sync.Mutex // serialises output lines and file names
	n   int
}

// printf writes one line to stdout.
func (s *sink) printf(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.e.Out, format+"\n", a...)
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s     *sink
	from  string
	rcpts []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// Data accepts the message, stores it when -dir is set and prints
// "delivered to sink: from=<a> to=<b> subject=... size=N [file]".
func (ss *sinkSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	subject, msgID := "", ""
	if m, err := mail.ReadMessage(bytes.NewReader(body)); err == nil {
		dec := new(mime.WordDecoder)
		subject = m.Header.Get("Subject")
		if d, err := dec.DecodeHeader(subject); err == nil {
			subject = d
		}
		msgID = m.Header.Get("Message-Id")
	}
	s := ss.s
	file := ""
	if s.dir != "" {
		s.mu.Lock()
		s.n++
		n := s.n
		s.mu.Unlock()
		file = filepath.Join(s.dir, fmt.Sprintf("%s-%d.eml", time.Now().UTC().Format("20060102T150405.000000000"), n))
		env := fmt.Sprintf("X-Sink-Envelope-From: <%s>\r\nX-Sink-Envelope-To: <%s>\r\n", ss.from, strings.Join(ss.rcpts, ">, <"))
		if err := os.WriteFile(file, append([]byte(env), body...), 0o640); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink cannot store the message"}
		}
		file = " file=" + file
	}
	s.printf("delivered to sink: from=<%s> to=<%s> subject=%q message-id=%s size=%d%s",
		ss.from, strings.Join(ss.rcpts, ">,<"), subject, msgID, len(body), file)
	return nil
}
