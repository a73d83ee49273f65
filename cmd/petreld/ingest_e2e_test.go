package main

import (
	"bytes"
	"errors"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/internal/testnet"
)

// TestIngestRulesThroughDaemon: through the real daemon and a real
// delivery, a Bcc given in the HTTP API's headers reaches its recipient
// (envelope) while no delivered copy carries a Bcc field, a raw message's
// Bcc field is removed, and a message with 51 Received fields is refused
// over SMTP with 554 5.4.6.
func TestIngestRulesThroughDaemon(t *testing.T) {
	e := newEnv(t)
	mx := e.mx(2, "example.test", testnet.MXScript{})
	e.start()

	var acc struct {
		ID string `json:"id"`
	}
	code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "alice@sender.test", "to": []string{"bob@example.test"},
		"subject": "built", "text": "hello", "headers": map[string]string{"Bcc": "Hidden <hidden@example.test>"}}, &acc)
	if err != nil || code != 202 {
		t.Fatalf("HTTP inject: %d %v", code, err)
	}
	raw := "From: alice@sender.test\r\nTo: carol@example.test\r\nBcc: secret@example.test\r\nSubject: raw\r\n\r\nraw body\r\n"
	if code, err := e.api("POST", "/api/v1/messages", map[string]any{"from": "alice@sender.test", "to": []string{"carol@example.test"}, "raw": raw}, &acc); err != nil || code != 202 {
		t.Fatalf("HTTP raw inject: %d %v", code, err)
	}
	waitFor(t, 15*time.Second, "two deliveries", func() bool { return mx.Count() >= 2 })
	var rcpts []string
	for _, m := range mx.Mails() {
		rcpts = append(rcpts, m.Rcpts...)
		if bytes.Contains(bytes.ToLower(m.Data), []byte("\nbcc:")) || bytes.Contains(m.Data, []byte("hidden@")) || bytes.Contains(m.Data, []byte("secret@")) {
			t.Errorf("delivered mail carries Bcc:\n%s", m.Data)
		}
	}
	if got := strings.Join(rcpts, ","); !strings.Contains(got, "hidden@example.test") || strings.Contains(got, "secret@") {
		t.Errorf("delivered to %s", got)
	}

	var loop strings.Builder
	for range 51 {
		loop.WriteString("Received: from a.example.net by b.example.net; Mon, 23 Nov 2026 10:00:00 +0000\r\n")
	}
	loop.WriteString("From: alice@sender.test\r\nSubject: loop\r\n\r\nbody\r\n")
	err = e.sendSMTP("alice@sender.test", []string{"bob@example.test"}, loop.String())
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 554 || !strings.HasPrefix(te.Msg, "5.4.6 ") {
		t.Errorf("51 Received over SMTP: %v, want 554 5.4.6", err)
	}
}
