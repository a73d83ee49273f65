package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// generated runs petrelctl with args and returns its stdout.
func generated(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("petrelctl %v: %d %s", args, code, errb.String())
	}
	return out.String()
}

// complete runs a shell with the generated script and returns the
// completions offered for the command line words (the last one being
// the word under the cursor).
func complete(t *testing.T, shell, script string, words ...string) []string {
	t.Helper()
	var prog string
	switch shell {
	case "bash":
		prog = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _petrelctl; printf '%s\n' "${COMPREPLY[@]}"`
	case "zsh":
		// Stand-ins for the completion system's builtins print what the
		// script offers; the script ends by calling _petrelctl.
		prog = `_describe() { print -l -- ${(P)4%%:*} | sed 's/:.*//' }
compadd() { shift; print -l -- "$@" }
_files() { :; }
f=$1; shift; words=(petrelctl "$@"); CURRENT=$#words; source $f`
	}
	cmd := exec.Command(shell, append([]string{"-c", prog, shell, script, "petrelctl"}, words...)...)
	if shell == "zsh" {
		cmd.Args = append([]string{"zsh", "-f", "-c", prog, "zsh", script}, words...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s completion of %q: %v\n%s", shell, words, err, out)
	}
	return strings.Fields(string(out))
}

// TestCompletionScripts: for bash and zsh, every command of the table is
// completed from its first word on, global flags and their values are
// skipped, and a command's flags and fixed arguments are offered.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Fatalf("%s is not installed (.ci/run installs zsh)", shell)
		}
		script := filepath.Join(dir, "petrelctl."+shell)
		os.WriteFile(script, []byte(generated(t, "completion", shell)), 0o644)
		if shell == "zsh" {
			if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
				t.Fatalf("zsh -n: %v %s", err, out)
			}
		}
		for name := range commands() {
			w := strings.Fields(name)
			if got := complete(t, shell, script, ""); !slices.Contains(got, w[0]) {
				t.Errorf("%s: %q not offered first: %v", shell, w[0], got)
			}
			if len(w) == 2 {
				if got := complete(t, shell, script, "-url", "http://127.0.0.1:9", w[0], w[1][:1]); !slices.Contains(got, w[1]) {
					t.Errorf("%s: %q not offered after %q: %v", shell, w[1], w[0], got)
				}
			}
		}
		tests := []struct {
			words []string
			want  []string
		}{
			{[]string{"domain", "add", "x.test", "-"}, []string{"-algo", "-dual"}},
			{[]string{"suppression", "remove", ""}, []string{"-stream"}},
			{[]string{"completion", ""}, []string{"bash", "zsh"}},
			{[]string{"-key", "queue", "q"}, []string{"queue"}}, // "queue" is -key's value
			{[]string{"-"}, []string{"-url", "-key", "-json", "-data-dir"}},
		}
		for _, tc := range tests {
			got := complete(t, shell, script, tc.words...)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("%s: completing %q offers %v, want %q", shell, tc.words, got, w)
				}
			}
		}
	}
}

// TestManPage: the generated page formats without groff warnings and
// documents every command of the table and every global flag.
func TestManPage(t *testing.T) {
	page := generated(t, "man")
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=250n", "-P-c", "-P-u", "-P-b")
	cmd.Stdin = strings.NewReader(page)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("groff: %v %s", err, errb.String())
	}
	text := out.String()
	for name, c := range commands() {
		if !strings.Contains(text, "petrelctl "+name) {
			t.Errorf("man page lacks command %q", name)
		}
		desc := c.usage
		if _, rest, ok := strings.Cut(c.usage, ": "); ok {
			desc = rest
		}
		if first := strings.Fields(desc)[0]; !strings.Contains(text, first) {
			t.Errorf("man page lacks %q's description", name)
		}
	}
	for _, f := range globalFlags {
		if !strings.Contains(text, "-"+f.name) {
			t.Errorf("man page lacks -%s", f.name)
		}
	}
}
