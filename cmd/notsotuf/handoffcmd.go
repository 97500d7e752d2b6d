package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/notsotuf/notsotuf"
)

// Stage now, swap at exit: `update --wait-pid`, `confirm`, and the hidden
// `helper` command that update starts (see notsotuf.Client.SwapAtExit).

func init() {
	register(command{"confirm", "--app NAME --install-dir DIR [--cache-dir DIR] [--current VERSION]",
		"tell that the version an update swapped in started well (update --confirm-within)", cmdConfirm})
}

// handOffFlags are the flags of update that hand the swap to a helper.
type handOffFlags struct {
	waitPID       int
	restart       string
	confirmWithin time.Duration
	waitTimeout   time.Duration
}

func addHandOffFlags(fs *flag.FlagSet) *handOffFlags {
	h := &handOffFlags{}
	fs.IntVar(&h.waitPID, "wait-pid", 0, "stage the update now and swap it in once the process `PID` (the application) has exited, from a helper process; the command returns once the helper runs")
	fs.StringVar(&h.restart, "restart", "", "with --wait-pid: start `program` after the swap (arguments after --), or the installed version again if the swap fails")
	fs.DurationVar(&h.confirmWithin, "confirm-within", 0, "with --wait-pid: the new version must run `notsotuf confirm` within this `duration` after the swap, or it is rolled back and withheld from later updates")
	fs.DurationVar(&h.waitTimeout, "wait-timeout", notsotuf.DefaultHandOffWait, "with --wait-pid: give up waiting after this `duration` (the update stays staged)")
	return h
}

// check refuses hand-off flags that make no sense together.
func (h *handOffFlags) check(restartArgs []string) error {
	switch {
	case h.waitPID < 0:
		return usagef("--wait-pid %d: want a process id", h.waitPID)
	case h.waitPID == 0 && (h.restart != "" || h.confirmWithin != 0):
		return usagef("--restart and --confirm-within go with --wait-pid (the swap is handed to a helper once that process exits)")
	case h.restart == "" && len(restartArgs) > 0:
		return usagef("arguments after -- are the arguments of --restart, which is not set")
	case h.confirmWithin < 0:
		return usagef("--confirm-within %v: want a positive duration, e.g. 30s", h.confirmWithin)
	case h.waitTimeout <= 0:
		return usagef("--wait-timeout %v: want a positive duration, e.g. 1h", h.waitTimeout)
	}
	return nil
}

// updateHandOff stages the update (if there is one) and hands its swap to
// a helper process that waits for --wait-pid.
func updateHandOff(env *cliEnv, f *clientFlags, c *notsotuf.Client, bar *updateBar, restartArgs []string) error {
	if f.singleExe {
		bar.finish()
		return usagef("--wait-pid is for an application that is a directory tree: --single-executable replaces the executable while it runs, no helper needed")
	}
	h := f.handOff
	// The restart program is checked before the download: a typo must not
	// cost a staged update.
	ho := notsotuf.HandOff{PID: h.waitPID, Wait: h.waitTimeout, ConfirmWithin: h.confirmWithin}
	if h.restart != "" {
		prog, err := exec.LookPath(h.restart)
		if err != nil {
			bar.finish()
			return usagef("--restart %s: %v", h.restart, err)
		}
		if prog, err = filepath.Abs(prog); err != nil {
			bar.finish()
			return err
		}
		ho.Restart = append([]string{prog}, restartArgs...)
		if ho.Dir, err = os.Getwd(); err != nil {
			bar.finish()
			return err
		}
	}
	from := c.Current()
	d, err := c.Decide(env.ctx)
	if err != nil {
		bar.finish()
		return err
	}
	u := d.Update
	if u != nil {
		err = c.Stage(env.ctx, u)
	}
	bar.finish()
	if err != nil {
		return err
	}
	staged, err := c.Staged()
	if err != nil {
		return err
	}
	if staged == nil {
		if f.json {
			return printResult(env.stdout, resultJSON{App: f.app, Installed: from.String(), Update: nil})
		}
		fmt.Fprintf(env.stdout, "%s %s is up to date\n", f.app, from)
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the notsotuf executable for the helper: %w", err)
	}
	ho.Helper = []string{self, "helper"}
	pid, err := c.SwapAtExit(ho)
	if err != nil {
		return err
	}
	logPath := filepath.Join(f.cacheDirOr(env), "notsotuf-helper.log")
	if f.json {
		r := resultJSON{App: f.app, Installed: from.String(), Staged: staged.Version.String(), HelperPID: pid}
		if u != nil {
			r.Update = installedOf(u)
		}
		return printResult(env.stdout, r)
	}
	if u != nil {
		fmt.Fprintf(env.stdout, "staged %s %s -> %s (%s)\n", f.app, from, u.Version, howInstalled(u.Result))
	} else {
		fmt.Fprintf(env.stdout, "%s %s is staged already\n", f.app, staged.Version)
	}
	fmt.Fprintf(env.stdout, "the swap waits for process %d to exit (helper process %d, log %s)\n", h.waitPID, pid, logPath)
	return nil
}

// cacheDirOr is --cache-dir or its default.
func (f *clientFlags) cacheDirOr(env *cliEnv) string {
	if f.cacheDir != "" {
		if abs, err := filepath.Abs(f.cacheDir); err == nil {
			return abs
		}
		return f.cacheDir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(base, "notsotuf", f.app)
}

func cmdConfirm(env *cliEnv, args []string) error {
	fs := newFlags(env, "confirm", "--app NAME --install-dir DIR [--cache-dir DIR] [--current VERSION]")
	f := &clientFlags{}
	fs.StringVar(&f.app, "app", "", "application `name`")
	fs.StringVar(&f.installDir, "install-dir", "", "`dir` of the installed application")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "the update's cache `dir` (default: the user cache dir/notsotuf/APP)")
	fs.StringVar(&f.current, "current", "", "confirm only if this `version` is the one waiting for its confirmation")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	switch {
	case f.app == "":
		return usagef("--app is required")
	case f.installDir == "":
		return usagef("--install-dir is required")
	}
	if err := notsotuf.ValidAppName(f.app); err != nil {
		return usagef("--app: %v", err)
	}
	if f.current != "" {
		if _, err := notsotuf.ParseVersion(f.current); err != nil {
			return usagef("--current: %v", err)
		}
	}
	cacheDir := f.cacheDirOr(env)
	if cacheDir == "" {
		return usagef("--cache-dir is required here")
	}
	return notsotuf.Confirm(notsotuf.ClientConfig{App: f.app, CurrentVersion: f.current, InstallDir: f.installDir,
		CacheDir: cacheDir, Fs: env.fs, Now: env.clientNow, Logger: env.logger})
}

// runHelper is `notsotuf helper`, which update --wait-pid starts with its
// parameters in the environment; it is not listed among the commands.
func runHelper() int {
	if code, ok := notsotuf.RunHelperIfRequested(); ok {
		return code
	}
	fmt.Fprintln(os.Stderr, "notsotuf: error: notsotuf helper is started by `notsotuf update --wait-pid`, not by hand")
	return 2
}

// handOffJSON is the last hand-off, when it did not go as asked.
type handOffJSON struct {
	Time    string `json:"time"`
	Outcome string `json:"outcome"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
	Log     string `json:"log,omitempty"`
}

func handOffOf(r *notsotuf.HandOffReport) *handOffJSON {
	if r == nil {
		return nil
	}
	return &handOffJSON{Time: r.Time.Format(time.RFC3339), Outcome: r.Outcome, Version: r.Version, Error: r.Error, Log: r.Log}
}

// warnHandOff prints the last hand-off when it did not go as asked.
func warnHandOff(env *cliEnv, r *notsotuf.HandOffReport) {
	if r == nil {
		return
	}
	what := map[string]string{
		notsotuf.HandOffFailed:     "the swap to %s failed; the installed version stayed",
		notsotuf.HandOffTimeout:    "the application did not exit in time; %s stays staged",
		notsotuf.HandOffRolledBack: "%s was rolled back",
	}[r.Outcome]
	if what == "" {
		return
	}
	fmt.Fprintf(env.stderr, "notsotuf: warning: last hand-off (%s): %s: %s (log %s)\n", r.Time.Format(time.RFC3339), fmt.Sprintf(what, r.Version), r.Error, r.Log)
}
