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

// usageError is a command line mistake: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

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

	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout)
		return 0
	}
	cmd, ok := commandTable[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "notsotuf: error: unknown command %q\nnotsotuf: hint: run `notsotuf help` for the list of commands\n", args[0])
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
		fmt.Fprintf(stderr, "notsotuf: hint: usage: notsotuf %s %s\n", cmd.name, cmd.args)
		return 2
	}
	return 1
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
	fmt.Fprintln(w, "\nRun `notsotuf COMMAND -h` for a command's flags.")
}

// newFlags returns a FlagSet for a command that reports errors instead of
// printing them, and prints -h help to stdout.
func newFlags(env *cliEnv, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "usage: notsotuf %s %s\n", name, args)
		fs.SetOutput(env.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses flags that may come before, between or after the
// positional arguments, and returns the positional arguments. "--" ends
// flag parsing.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	// Help goes to stdout when asked for; a mistake gets a one-line error
	// and a usage hint instead of the whole help.
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
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
