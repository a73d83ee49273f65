package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	t.Setenv("PETREL_SENDMAIL", "")
	tests := []struct {
		args []string
		want opts
		code int // exit code of the error; 0 = no error
	}{
		{[]string{"-t", "-i"}, opts{extract: true, ignoreDt: true}, 0},
		{[]string{"-ti", "-oi", "a@x.test"}, opts{extract: true, ignoreDt: true, rcpts: []string{"a@x.test"}}, 0},
		{[]string{"-fme@x.test", "-FCron Daemon", "b@x.test"}, opts{from: "me@x.test", fullName: "Cron Daemon", rcpts: []string{"b@x.test"}}, 0},
		{[]string{"-f", "me@x.test", "-F", "N", "-r", "other@x.test"}, opts{from: "other@x.test", fullName: "N"}, 0},
		{[]string{"-oem", "-odi", "-bm", "-v", "-N", "never", "-R", "hdrs", "c@x.test"}, opts{rcpts: []string{"c@x.test"}}, 0},
		{[]string{"--server=http://127.0.0.1:1", "--", "-odd@x.test"}, opts{server: "http://127.0.0.1:1", rcpts: []string{"-odd@x.test"}}, 0},
		{[]string{"-f"}, opts{}, exUsage},
		{[]string{"-bs"}, opts{}, exUsage},
		{[]string{"-Q"}, opts{}, exUsage},
	}
	for _, tc := range tests {
		got, err := parseArgs(tc.args)
		var ee *exitError
		if tc.code != 0 {
			if !errors.As(err, &ee) || ee.code != tc.code {
				t.Errorf("%q: err %v, want exit %d", tc.args, err, tc.code)
			}
			continue
		}
		if tc.want.server == "" {
			tc.want.server = "smtp://127.0.0.1:2525"
		}
		if err != nil || got.extract != tc.want.extract || got.ignoreDt != tc.want.ignoreDt || got.from != tc.want.from ||
			got.fullName != tc.want.fullName || got.server != tc.want.server || !slices.Equal(got.rcpts, tc.want.rcpts) {
			t.Errorf("%q: %+v %v, want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestReadMessageDots(t *testing.T) {
	tests := []struct {
		in     string
		ignore bool
		want   string
	}{
		{"a\n.\nb\n", false, "a\n"},
		{"a\r\n.\r\nb\r\n", false, "a\r\n"},
		{"a\n.\nb\n", true, "a\n.\nb\n"},
		{"a\n..\nb", false, "a\n..\nb"},
		{"a\n.", false, "a\n"},
	}
	for _, tc := range tests {
		got, err := readMessage(strings.NewReader(tc.in), tc.ignore)
		if err != nil || string(got) != tc.want {
			t.Errorf("readMessage(%q, %v) = %q %v, want %q", tc.in, tc.ignore, got, err, tc.want)
		}
	}
}

func TestPrepare(t *testing.T) {
	msg := []byte("To: a@x.test, A2 <a2@x.test>\nBcc: secret@x.test,\n\tsecret2@x.test\nSubject: s\n\nBcc: body line stays\n")
	out, rcpts, err := prepare(opts{extract: true, fullName: "Me", rcpts: []string{"A@x.test"}}, "me@x.test", msg)
	if err != nil {
		t.Fatal(err)
	}
	want := "From: \"Me\" <me@x.test>\nTo: a@x.test, A2 <a2@x.test>\nSubject: s\n\nBcc: body line stays\n"
	if string(out) != want {
		t.Errorf("message %q, want %q", out, want)
	}
	if !slices.Equal(rcpts, []string{"A@x.test", "a2@x.test", "secret@x.test", "secret2@x.test"}) {
		t.Errorf("recipients %v", rcpts)
	}
	if _, _, err := prepare(opts{rcpts: []string{"root"}}, "me@x.test", msg); err == nil {
		t.Error("bare local name accepted (petreld has no local delivery)")
	}
}

// FuzzPrepare: arbitrary stdin never panics the header handling.
func FuzzPrepare(f *testing.F) {
	f.Add([]byte("To: a@x.test\nBcc: b@x.test\n\nbody"), true)
	f.Add([]byte("no header"), false)
	f.Fuzz(func(t *testing.T, msg []byte, extract bool) {
		out, rcpts, err := prepare(opts{extract: extract, rcpts: []string{"r@x.test"}}, "s@x.test", msg)
		if err == nil && (len(out) == 0 || len(rcpts) == 0) {
			t.Fatalf("accepted with no message or recipients")
		}
	})
}
