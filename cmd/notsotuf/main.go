// Command notsotuf publishes and installs secure, small, crash-safe
// application updates (a Go successor of Python's tufup).
//
// Usage:
//
//	notsotuf COMMAND [flags] [arguments]
//
// Run `notsotuf help` for the list of commands and `notsotuf COMMAND -h`
// for a command's flags. Errors are printed to stderr as
// "notsotuf: error: ..." (with a "notsotuf: hint: ..." line when there is
// advice) and the exit status is 1; bad usage exits with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// cliEnv is everything a command touches in the outside world, so tests can
// run commands in-process.
type cliEnv struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	fs     afero.Fs
	getenv func(string) string
	now    func() time.Time
	// clientNow is the clock of check and update: the real one unless
	// clientClockFromEnv lets NOTSOTUF_NOW set it too.
	clientNow func() time.Time
	logger    *slog.Logger // silent unless -v or NOTSOTUF_VERBOSE=1
}

// clientClockFromEnv lets NOTSOTUF_NOW set the clock of check and update
// as well. Only the test binary sets it: on a user's machine a clock in
// the past would turn off the client's freeze protection, so the client
// commands ignore NOTSOTUF_NOW (with a warning) in a real build.
var clientClockFromEnv = false

// command is one subcommand. Each *cmd.go file registers its commands in
// an init function; the table is complete before main runs and never
// changes afterwards.
type command struct {
	name    string
	args    string // usage after the name, e.g. "VERSION BUNDLE_DIR [flags]"
	summary string
	run     func(env *cliEnv, args []string) error
}

var commandTable = map[string]command{}

func register(c command) {
	if _, dup := commandTable[c.name]; dup {
		panic("notsotuf: command registered twice: " + c.name)
	}
	commandTable[c.name] = c
}

// usageError is a command line mistake: exit status 2, with the usage of
// the command as a hint (of the subcommand name, with its args, when set).
type usageError struct{ msg, name, args string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

func init() {
	// The patch tool commands (patchcmd.go) take their streams directly.
	register(command{"diff", "[-format bsdiff|compact] OLD NEW PATCH", "write a patch from OLD to NEW (BSDIFF40 by default, like bsdiff)", streams(runDiff)})
	register(command{"patch", "OLD PATCH NEW", "apply a patch of any format (like bspatch)", streams(runPatch)})
}

func streams(f func(args []string, stdout, stderr io.Writer) error) func(env *cliEnv, args []string) error {
	return func(env *cliEnv, args []string) error { return f(args, env.stdout, env.stderr) }
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status. SIGINT
// cancels the command's context (serve stops, add and verify stop early).
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env := &cliEnv{
		ctx:       ctx,
		stdout:    stdout,
		stderr:    stderr,
		fs:        afero.NewOsFs(),
		getenv:    os.Getenv,
		now:       time.Now,
		clientNow: time.Now,
	}
	// NOTSOTUF_NOW (RFC 3339) fixes the clock of the repository commands:
	// for tests and for rehearsing an expiry ("what does status say next
	// month?"). check and update keep the real clock (clientClockFromEnv).
	nowEnv := os.Getenv("NOTSOTUF_NOW")
	if nowEnv != "" {
		t, err := time.Parse(time.RFC3339, nowEnv)
		if err != nil {
			fmt.Fprintf(stderr, "notsotuf: error: NOTSOTUF_NOW=%q: not an RFC 3339 time\n", nowEnv)
			return 2
		}
		env.now = func() time.Time { return t }
		if clientClockFromEnv {
			env.clientNow = env.now
		}
	}
	verbose := os.Getenv("NOTSOTUF_VERBOSE") == "1"
	if len(args) > 0 && (args[0] == "-v" || args[0] == "--verbose") {
		verbose, args = true, args[1:]
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	env.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if len(args) > 0 && args[0] == "helper" {
		return runHelper() // handoffcmd.go: started by update --wait-pid
	}
	if len(args) == 0 {
		// No command is a usage error: the list goes to stderr, so that a
		// script that forgot its arguments does not pass for a success.
		printUsage(stderr)
		return 2
	}
	if isHelp(args[0]) {
		if len(args) == 1 || isHelp(args[1]) {
			printUsage(stdout)
			return 0
		}
		// `notsotuf help COMMAND [SUBCOMMAND]` is `notsotuf COMMAND [SUBCOMMAND] -h`.
		args = append(args[1:], "-h")
	}
	cmd, ok := commandTable[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "notsotuf: error: unknown command %q\n", args[0])
		fmt.Fprintf(stderr, "notsotuf: hint: %s\n", unknownCommandHint(args[0]))
		return 2
	}
	err := cmd.run(env, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(stderr, "notsotuf: error: %s\n", line)
		}
	}
	if hint := notsotuf.ErrorHint(err); hint != "" {
		fmt.Fprintf(stderr, "notsotuf: hint: %s\n", hint)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		name, args := cmd.name, cmd.args
		if ue.name != "" {
			name, args = ue.name, ue.args
		}
		fmt.Fprintf(stderr, "notsotuf: hint: usage: %s (more: `notsotuf %s -h`)\n", strings.TrimSpace("notsotuf "+name+" "+args), name)
		return 2
	}
	return 1
}

// isHelp reports whether a command line word asks for help.
func isHelp(a string) bool {
	return a == "help" || a == "-h" || a == "--help" || a == "-help" || a == "--h"
}

// unknownCommandHint says what to run instead of an unknown command: the
// command it is a typo of, or where flags go, or the list of commands.
func unknownCommandHint(name string) string {
	if strings.HasPrefix(name, "-") {
		return "flags come after the command (`notsotuf COMMAND [flags]`; only -v comes before); run `notsotuf help` for the list of commands"
	}
	best, bestDist := "", 3
	for n := range commandTable {
		if d := editDistance(strings.ToLower(name), n); d < bestDist || (d == bestDist && n < best) {
			best, bestDist = n, d
		}
	}
	if best != "" && bestDist <= max(1, len(name)/3) {
		return fmt.Sprintf("did you mean `notsotuf %s`? run `notsotuf help` for the list of commands", best)
	}
	return "run `notsotuf help` for the list of commands"
}

// editDistance is the Levenshtein distance between a and b (short words).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: notsotuf [-v] COMMAND [flags] [arguments]\n\ncommands:")
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, commandTable[n].summary)
	}
	fmt.Fprintln(w, "\nRun `notsotuf COMMAND -h` (or `notsotuf help COMMAND`) for a command's flags.")
}

// newFlags returns a FlagSet for a command that reports errors instead of
// printing them, and prints -h help to stdout: the usage line, the
// command's summary and its flags.
func newFlags(env *cliEnv, name, args string) *flag.FlagSet {
	return newFlagsSummary(env, name, args, commandTable[name].summary)
}

// newFlagsSummary is newFlags for a subcommand, which has its own summary.
func newFlagsSummary(env *cliEnv, name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "usage: %s\n", strings.TrimSpace("notsotuf "+name+" "+args))
		if summary != "" {
			fmt.Fprintf(env.stdout, "\n%s.\n", strings.ToUpper(summary[:1])+summary[1:])
		}
		fmt.Fprintln(env.stdout, "\nflags:")
		printFlags(env.stdout, fs)
	}
	return fs
}

// printFlags lists the flags of fs as the commands are written in the
// documentation: --name VALUE, then the description and the default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if strings.Trim(value, "abcdefghijklmnopqrstuvwxyz") == "" {
			value = strings.ToUpper(value) // DIR, as in the usage lines
		}
		if value != "" {
			line += " " + value
		}
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, strings.ReplaceAll(usage, "\n", "\n      "))
	})
}

// parseFlags parses flags that may come before, between or after the
// positional arguments, and returns the positional arguments. "--" ends
// flag parsing. -h, --help, or help as the only argument print the
// command's help and return flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	// Help goes to stdout when asked for; a mistake gets a one-line error
	// and a usage hint instead of the whole help.
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	if len(args) == 1 && args[0] == "help" {
		help()
		return nil, flag.ErrHelp
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a != "help" && isHelp(a) {
			help()
			return nil, flag.ErrHelp
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
