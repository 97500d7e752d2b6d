package main

import (
	"bytes"
	"strings"
	"testing"
)

// runCLI runs one command line in-process and returns its exit status and
// outputs.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpEverywhere asks every command and every keys subcommand for
// help in each of the three ways: the help goes to stdout, nothing to
// stderr, exit status 0, and nothing else runs (there is no repository in
// the working directory, so a command that ran would fail).
func TestHelpEverywhere(t *testing.T) {
	t.Chdir(t.TempDir())
	var lines [][]string
	for name := range commandTable {
		lines = append(lines, []string{name})
	}
	for _, sc := range keysSubcommands {
		lines = append(lines, []string{"keys", sc.name})
	}
	for _, cmd := range lines {
		want := "usage: notsotuf " + strings.Join(cmd, " ")
		for _, ask := range [][]string{
			append(append([]string{}, cmd...), "-h"),
			append(append([]string{}, cmd...), "--help"),
			append(append([]string{}, cmd...), "help"),
			append([]string{"help"}, cmd...),
		} {
			code, out, errs := runCLI(t, ask...)
			if code != 0 || errs != "" || !strings.HasPrefix(out, want) {
				t.Errorf("notsotuf %s: exit %d, stdout %.80q, stderr %q; want exit 0 and stdout starting with %q",
					strings.Join(ask, " "), code, out, errs, want)
			}
		}
	}
	// The keys subcommands are listed by `keys -h`, each with its help.
	_, out, _ := runCLI(t, "keys", "-h")
	for _, sc := range keysSubcommands {
		if !strings.Contains(out, "keys "+sc.name+" ") {
			t.Errorf("notsotuf keys -h does not list %q:\n%s", sc.name, out)
		}
	}
	// A keys subcommand takes only its own flags.
	if code, _, errs := runCLI(t, "keys", "list", "--encrypt"); code != 2 || !strings.Contains(errs, "usage: notsotuf keys list") {
		t.Errorf("keys list --encrypt: exit %d, stderr %q; want a usage error naming keys list", code, errs)
	}
}

// TestUsageExitCodes: no command, an unknown command or a flag before the
// command are usage errors (status 2, the usage on stderr, not stdout).
func TestUsageExitCodes(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		args []string
		err  string // in stderr
	}{
		{nil, "usage: notsotuf [-v] COMMAND"},
		{[]string{"-v"}, "usage: notsotuf [-v] COMMAND"},
		{[]string{"stauts"}, "did you mean `notsotuf status`?"},
		{[]string{"--app", "x", "update"}, "flags come after the command"},
		{[]string{"frobnicate"}, "run `notsotuf help` for the list of commands"},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"keys"}, "keys needs a subcommand"},
		{[]string{"keys", "frobnicate"}, "keys frobnicate: unknown subcommand"},
		{[]string{"keys", "add", "root"}, "usage: notsotuf keys add ROLE NAME"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.err) {
			t.Errorf("notsotuf %s: exit %d, stdout %.80q, stderr %q; want exit 2, no stdout, stderr with %q",
				strings.Join(tc.args, " "), code, out, errs, tc.err)
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		if code, out, _ := runCLI(t, args...); code != 0 || !strings.Contains(out, "commands:") {
			t.Errorf("notsotuf %s: exit %d; want 0 and the list of commands on stdout", args[0], code)
		}
	}
}
