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
// The application is installed as a directory (tree mode): the release
// archive holds the executable "selfupdate" (and anything else the program
// needs), and the install directory is the directory of the running
// executable. On Unix the directory is swapped by rename while the program
// runs and the new executable replaces the process with syscall.Exec. On
// Windows a directory holding a running program cannot be renamed, so the
// program copies itself outside the directory, starts the copy to install
// the update, and exits; the copy installs, starts the new version and
// exits (see install_windows.go).
//
// Build a release (the version is set at link time):
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
	if len(os.Args) == 3 && os.Args[1] == installFlag {
		// Windows only: this is the copy that installs for the original.
		os.Exit(installForOriginal(os.Args[2], logger))
	}
	fmt.Printf("%s %s\n", appName, version)
	if err := selfUpdate(logger); err != nil {
		logger.Warn("update check failed; running the installed version", "err", err)
	}
	run()
}

// run is the application itself.
func run() {
	fmt.Printf("hello from %s %s\n", appName, version)
}

// client returns the update client for the install directory dir.
func client(dir string, logger *slog.Logger) (*notsotuf.Client, error) {
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
	dir := filepath.Dir(exe)
	c, err := client(dir, logger)
	if err != nil {
		return err
	}
	// Finish (or undo) an install that a crash interrupted.
	if err := c.Recover(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	u, err := c.Check(ctx)
	if err != nil || u == nil {
		return err
	}
	fmt.Printf("updating %s %s -> %s\n", appName, c.Current(), u.Version)
	if mustInstallFromCopy {
		return startInstallerCopy(exe)
	}
	if err := c.Install(ctx, u); err != nil {
		return err
	}
	// The directory now holds the new version: run it in place of this
	// process (same path, same arguments, same environment).
	return reexec(exe)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
