package mta

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		err      error
		from     string
		received int
		bodyAt   int
	}{
		{"simple", "From: A <a@example.org>\r\nSubject: x\r\n\r\nbody\r\n", nil, "a@example.org", 0, 39},
		{"bare LF", "From: a@example.org\nSubject: x\n\nbody\n", nil, "a@example.org", 0, 32},
		{"trace and folding", "Received: from x\r\n\tby y; date\r\nReturn-Path: <r@x>\r\nreceived: z\r\nFrom: a@example.org,\r\n b@example.org\r\n\r\n", nil, "a@example.org", 2, 104},
		{"no body", "Subject: x\r\n", nil, "", 0, 12},
		{"continuation first", " x\r\nSubject: y\r\n\r\n", ErrBadHeader, "", 0, 0},
		{"no colon", "not a header\r\n\r\nbody", ErrBadHeader, "", 0, 0},
		{"space in name", "Sub ject: x\r\n\r\n", ErrBadHeader, "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.raw))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if m.From != tt.from || m.Count("Received") != tt.received || m.BodyOffset() != tt.bodyAt {
				t.Errorf("From %q Received %d body at %d", m.From, m.Count("Received"), m.BodyOffset())
			}
			if string(m.Bytes()) != tt.raw {
				t.Errorf("unchanged message rendered as %q", m.Bytes())
			}
		})
	}
}

// TestMessageEdits: fields land where the Message doc says (signatures,
// new trace, the client's trace, inserted, the rest minus removed), the
// counts follow, and WriteTo is Bytes without the signatures.
func TestMessageEdits(t *testing.T) {
	raw := "Received: from a\r\n\tby b\r\nX-Petrel-Stream: marketing\r\nFrom: a@example.org\r\nX-Petrel-Stream: again\r\nSubject: s\r\n\r\nbody\r\n"
	m, err := ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Get("x-petrel-stream"); !ok || v != "again" {
		t.Errorf("Get = %q %v", v, ok)
	}
	m.Remove("X-Petrel-Stream")
	m.Prepend("Received: by us\r\n")
	m.Insert("List-Unsubscribe: <x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
	m.AddSignature("DKIM-Signature: v=1\r\n")
	want := "DKIM-Signature: v=1\r\nReceived: by us\r\nReceived: from a\r\n\tby b\r\nList-Unsubscribe: <x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"
	if got := string(m.Bytes()); got != want {
		t.Fatalf("Bytes:\n%q\nwant\n%q", got, want)
	}
	if m.Len() != len(want) {
		t.Errorf("Len %d, want %d", m.Len(), len(want))
	}
	var w bytes.Buffer
	m.WriteTo(&w)
	if w.String() != strings.TrimPrefix(want, "DKIM-Signature: v=1\r\n") {
		t.Errorf("WriteTo:\n%q", w.String())
	}
	for name, n := range map[string]int{"received": 2, "x-petrel-stream": 0, "List-Unsubscribe-Post": 1, "dkim-signature": 0, "from": 1} {
		if got := m.Count(name); got != n {
			t.Errorf("Count(%s) = %d, want %d", name, got, n)
		}
	}
	if _, ok := m.Get("X-Petrel-Stream"); ok {
		t.Error("removed field still seen by Get")
	}
}

// FuzzParseMessage: any input either is refused or parses; an unedited
// message renders byte for byte; an edited one parses again with the
// counts the edits imply.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n",
		"Received: x\r\n y\r\nX-Petrel-Stream: m\r\n\r\n",
		"a:\n\n", "", "\r\n", " x\r\n", "From: <<<\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseMessage(raw)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Bytes(), raw) {
			t.Fatalf("unedited message changed:\n%q\n%q", raw, m.Bytes())
		}
		if m.BodyOffset() < 0 || m.BodyOffset() > len(raw) {
			t.Fatalf("body offset %d of %d", m.BodyOffset(), len(raw))
		}
		{
			// Edits keep the message parseable.
			recv := m.Count("Received")
			m.Remove("X-Petrel-Stream")
			m.Prepend("Received: by us\r\n")
			m.Insert("X-Added: 1\r\n")
			out := m.Bytes()
			m2, err := ParseMessage(out)
			if err != nil {
				t.Fatalf("edited message does not parse: %v\n%q", err, out)
			}
			if m2.Count("Received") != recv+1 || m2.Count("X-Petrel-Stream") != 0 || m2.Count("X-Added") < 1 {
				t.Fatalf("counts after edit: %d Received (was %d), %d stream, %d added\n%q",
					m2.Count("Received"), recv, m2.Count("X-Petrel-Stream"), m2.Count("X-Added"), out)
			}
		}
	})
}
