// Command treeupdate is an application that is a directory (an executable
// and its data files) and keeps itself up to date with notsotuf while it
// runs: a template to copy into your own program.
//
// At start it finishes any interrupted install (Recover), confirms that
// this version started well (Confirm: after an update handed to the
// helper with a confirmation window, a version that never gets here is
// rolled back), and checks the repository for a newer release in the
// background while it does its work. A newer release is staged beside the
// install directory (Stage: downloaded, patched, extracted and verified;
// the installed tree is not touched). When the application exits, it
// hands the swap to a helper process (SwapAtExit), which is this same
// executable started again (main calls notsotuf.RunHelperIfRequested
// first): the helper waits for this process to exit, swaps the staged
// tree in (keeping the files the user added to the install directory),
// and starts the application again, now the new version. The new version
// must confirm its start within the window (30 s here), or the helper
// puts the previous tree back, starts it, and later checks skip the
// release that did not start.
//
// This is application code (package main), not the notsotuf library: like
// any application it reads its own files and ends its process with the os
// package; the library itself never does (it takes an Fs and never exits).
//
// This works on Windows too, where a directory holding a running program
// cannot be renamed: the swap happens once the application has exited,
// and the helper runs from a copy in the cache directory.
//
// Build a release into a bundle directory and publish it:
//
//	go build -ldflags "-X main.version=1.0" -o bundle-1.0/treeupdate ./examples/treeupdate
//	mkdir bundle-1.0/data && echo hello > bundle-1.0/data/message.txt
//	notsotuf add 1.0 bundle-1.0
//
// Settings come from the environment so the same binary works in tests:
// TREEUPDATE_URL is the repository's base URL (default
// http://127.0.0.1:8080), TREEUPDATE_CACHE the cache directory (default:
// the user cache directory + /notsotuf-treeupdate), TREEUPDATE_LOG a file
// to which each run appends one line (what ran, for the test), and
// TREEUPDATE_CONFIRM_WITHIN the confirmation window (a Go duration).
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
)

// trustedRoot is the repository's root metadata the application trusts.
//
//go:embed root.json
var trustedRoot []byte

// version is the running version, set with -ldflags "-X main.version=...".
var version = "0.0.0"

// broken, set with -ldflags "-X main.broken=hang", makes a build that
// hangs at start before it confirms (the test's bad release).
var broken = ""

const appName = "treeupdate"

func main() {
	// First thing: this process may be the helper of an earlier run.
	if code, ok := notsotuf.RunHelperIfRequested(); ok {
		os.Exit(code)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		logger.Error("cannot find the executable", "err", err)
		os.Exit(1)
	}
	dir := filepath.Dir(exe) // the install directory: the executable is at its top
	c, err := client(dir, logger)
	if err != nil {
		logger.Warn("no updates", "err", err)
	}
	staging := make(chan *notsotuf.Update, 1)
	note := ""
	if c != nil {
		note = startUp(c, logger, staging)
	}

	run(dir, note) // the application's work

	if c != nil {
		handOff(c, exe, logger, staging)
	}
}

// startUp recovers, confirms this version and starts the background check;
// it returns what the check said of withheld releases.
func startUp(c *notsotuf.Client, logger *slog.Logger, staging chan<- *notsotuf.Update) string {
	// Finish (or undo) an install that a crash interrupted; roll back a
	// version whose confirmation did not come in time. ErrBusy: another
	// instance is installing, or a new version waits for its
	// confirmation: run as is.
	if err := c.Recover(); errors.Is(err, notsotuf.ErrBusy) {
		close(staging)
		return ""
	} else if err != nil {
		logger.Warn("recover failed", "err", err)
	}
	if broken == "hang" {
		time.Sleep(time.Hour) // a release that does not start
	}
	// This version works (its configuration loaded, its window open...):
	// keep it.
	if err := c.Confirm(); err != nil {
		logger.Warn("confirm failed", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	d, err := c.Decide(ctx)
	note := ""
	if err == nil {
		for _, w := range d.Withheld {
			note += fmt.Sprintf(" withheld %s (%s)", w.Version, w.Reason)
		}
	}
	// Download and stage the update while the application works.
	go func() {
		defer cancel()
		defer close(staging)
		if err != nil {
			logger.Warn("update check failed; running this version", "err", err)
			return
		}
		if d.Update == nil {
			return
		}
		if err := c.Stage(ctx, d.Update); err != nil {
			logger.Warn("staging the update failed", "err", err)
			return
		}
		staging <- d.Update
	}()
	return note
}

// handOff hands the swap of a staged update to the helper, which restarts
// the application (same executable path, same arguments) once this
// process has exited.
func handOff(c *notsotuf.Client, exe string, logger *slog.Logger, staging <-chan *notsotuf.Update) {
	var u *notsotuf.Update
	select {
	case u = <-staging:
	case <-time.After(time.Minute):
		return // still downloading: the next run goes on from where it stopped
	}
	if u == nil {
		return
	}
	within := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TREEUPDATE_CONFIRM_WITHIN")); err == nil {
		within = d
	}
	pid, err := c.SwapAtExit(notsotuf.HandOff{
		PID:           os.Getpid(),
		Restart:       append([]string{exe}, os.Args[1:]...),
		ConfirmWithin: within,
	})
	if err != nil {
		logger.Warn("cannot hand the update over; it stays staged", "err", err)
		return
	}
	fmt.Printf("%s %s will be replaced by %s when it exits (helper process %d)\n", appName, version, u.Version, pid)
}

// run is the application itself: it shows the message of its data file.
func run(dir, note string) {
	msg, err := os.ReadFile(filepath.Join(dir, "data", "message.txt"))
	if err != nil {
		msg = []byte(err.Error())
	}
	line := fmt.Sprintf("%s %s: %s%s", appName, version, strings.TrimSpace(string(msg)), note)
	fmt.Println(line)
	if p := os.Getenv("TREEUPDATE_LOG"); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%d %s\n", os.Getpid(), line)
			f.Close()
		}
	}
}

// client returns the update client of the tree at dir.
func client(dir string, logger *slog.Logger) (*notsotuf.Client, error) {
	base := strings.TrimRight(envOr("TREEUPDATE_URL", "http://127.0.0.1:8080"), "/")
	cache := os.Getenv("TREEUPDATE_CACHE")
	if cache == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		cache = filepath.Join(c, "notsotuf-"+appName)
	}
	return notsotuf.NewClient(notsotuf.ClientConfig{
		App:            appName,
		CurrentVersion: version,
		InstallDir:     dir,
		CacheDir:       cache,
		MetadataURL:    base + "/metadata",
		TargetsURL:     base + "/targets",
		TrustedRoot:    trustedRoot,
		Logger:         logger,
	})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
