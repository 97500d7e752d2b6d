//go:build windows

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// On Windows a directory holding a running executable cannot be renamed:
// the update is installed by a copy of the program started from outside
// the install directory, after the original has exited.
const mustInstallFromCopy = true

// installFlag starts the installer copy: selfupdate.exe -selfupdate-install-for EXE.
const installFlag = "-selfupdate-install-for"

func reexec(exe string) error {
	return startAndExit(exe, os.Args[1:]...)
}

// startInstallerCopy copies the running executable to a temporary
// directory, starts it to install the update for exe, and exits.
func startInstallerCopy(exe string) error {
	dir, err := os.MkdirTemp("", "selfupdate-installer-")
	if err != nil {
		return err
	}
	cp := filepath.Join(dir, "selfupdate-installer.exe")
	if err := copyFile(exe, cp); err != nil {
		return err
	}
	return startAndExit(cp, installFlag, exe)
}

// installForOriginal runs in the copy: it installs the update into exe's
// directory (retrying while the original is still exiting), then starts
// the new version.
func installForOriginal(exe string, logger *slog.Logger) int {
	c, err := client(filepath.Dir(exe), logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "selfupdate installer:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for try := 0; ; try++ {
		_, err = c.Update(ctx)
		if err == nil || try == 50 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "selfupdate installer:", err)
	}
	// Start whatever is installed now (the new version, or the old one if
	// the install failed) and exit.
	if err := startAndExit(exe); err != nil {
		fmt.Fprintln(os.Stderr, "selfupdate installer:", err)
		return 1
	}
	return 0
}

func startAndExit(exe string, args ...string) error {
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", exe, err)
	}
	os.Exit(0)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
