// Command selfupdate is an application that keeps itself up to date with
// notsotuf: a template to copy into your own program.
//
// It embeds the root.json of its update repository (the trust anchor: copy
// your repository's metadata/root.json over the one in this directory
// before building), and at start it recovers from any interrupted install,
// checks the repository for a newer release, installs it and re-executes
// itself, so the user runs the new version at once. A failed check never
// stops the application: it logs and carries on with the installed version.
//
// The application is one executable file (notsotuf's single-executable
// mode, ClientConfig.SingleExecutable): the install path is the running
// executable itself (os.Executable, symbolic links resolved), and each
// release archive holds just that file. The client writes the new
// executable beside the running one and renames it over it, which works
// while the program runs (on Windows the running file is first renamed
// aside, and removed at a later start). The program then re-executes
// itself from the same path: on Unix with syscall.Exec, on Windows by
// starting the new executable and exiting with its status (see
// reexec_unix.go and reexec_windows.go). The first update downloads the
// full archive; its verified copy stays in the cache directory, and later
// updates travel as patches from it when the repository has them.
//
// Build a release into a bundle directory that holds only the executable
// (the version is set at link time), and publish it:
//
//	go build -ldflags "-X main.version=1.0" -o bundle-1.0/selfupdate ./examples/selfupdate
//	notsotuf add 1.0 bundle-1.0
//
// Settings come from the environment so the same binary works in tests:
// SELFUPDATE_URL is the repository's base URL (metadata/ and targets/ below
// it; default http://127.0.0.1:8080), SELFUPDATE_CACHE the cache directory
// (default: the user cache directory + /notsotuf-selfupdate).
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

const appName = "selfupdate"

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Printf("%s %s\n", appName, version)
	if err := selfUpdate(logger); err != nil {
		logger.Warn("update failed; running this version", "err", err)
	}
	run()
}

// run is the application itself.
func run() {
	fmt.Printf("hello from %s %s\n", appName, version)
}

// client returns the update client for the executable exe.
func client(exe string, logger *slog.Logger) (*notsotuf.Client, error) {
	base := strings.TrimRight(envOr("SELFUPDATE_URL", "http://127.0.0.1:8080"), "/")
	cache := os.Getenv("SELFUPDATE_CACHE")
	if cache == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		cache = filepath.Join(c, "notsotuf-"+appName)
	}
	return notsotuf.NewClient(notsotuf.ClientConfig{
		App:              appName,
		CurrentVersion:   version,
		InstallDir:       exe, // single-executable mode: the path of the executable
		SingleExecutable: true,
		CacheDir:         cache,
		MetadataURL:      base + "/metadata",
		TargetsURL:       base + "/targets",
		TrustedRoot:      trustedRoot,
		Logger:           logger,
	})
}

// selfUpdate installs a newer release, if there is one, and re-executes
// the program (it returns only when there is nothing to install, or on
// error).
func selfUpdate(logger *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return err
	}
	c, err := client(exe, logger)
	if err != nil {
		return err
	}
	// Finish (or undo) an install that a crash interrupted, and remove
	// the executables earlier updates renamed aside (Windows).
	// ErrBusy: another instance is installing an update; run as is.
	if err := c.Recover(); errors.Is(err, notsotuf.ErrBusy) {
		return nil
	} else if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	u, err := c.Check(ctx)
	if err != nil || u == nil {
		return err
	}
	how := "full archive"
	if !u.Plan.Full {
		how = fmt.Sprintf("%d patch(es)", len(u.Plan.Files))
	}
	fmt.Printf("updating %s %s -> %s (%s, %d bytes)\n", appName, c.Current(), u.Version, how, u.Plan.Bytes)
	if err := c.Install(ctx, u); errors.Is(err, notsotuf.ErrBusy) {
		return nil // another instance got there first
	} else if err != nil {
		return err
	}
	// The path now holds the new version: run it in place of this process
	// (same path, same arguments, same environment).
	return reexec(exe)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
