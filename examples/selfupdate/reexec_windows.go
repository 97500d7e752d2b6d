//go:build windows

// This file is application code (the example's package main), not the
// notsotuf library: the library never calls os.Exit, but an application
// that hands over to its new version on Windows must end itself here.

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// reexec starts the executable at exe, the new version just installed at
// the same path, and exits with its exit status. Windows has no exec: the
// old process stays, waiting, so that the console, the standard streams
// and the exit status pass to the new version as they would with exec.
// The old executable, renamed aside by the install
// (selfupdate.exe.notsotuf-old-*), cannot be removed while this process
// runs; the next start's Recover removes it. It returns only on error.
// (This is the application, package main: ending the process is its call;
// the notsotuf library itself never exits.)
func reexec(exe string) error {
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", exe, err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	}
	// The new version was started but waiting for it failed: it runs on
	// its own, this process must not run the old version as well.
	fmt.Fprintf(os.Stderr, "selfupdate: waiting for %s: %v\n", exe, err)
	os.Exit(1)
	return nil // not reached
}
