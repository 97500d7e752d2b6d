//go:build !windows

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
)

// On Unix the install directory can be swapped while the program runs.
const mustInstallFromCopy = false

// installFlag starts the installer copy (Windows only).
const installFlag = "-selfupdate-install-for"

// reexec replaces the process with the executable at exe.
func reexec(exe string) error {
	if err := syscall.Exec(exe, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("re-executing %s: %w", exe, err)
	}
	return nil // not reached
}

func startInstallerCopy(string) error {
	return errors.New("installing from a copy is only needed on Windows")
}

func installForOriginal(string, *slog.Logger) int { return 2 }
