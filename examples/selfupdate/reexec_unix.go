//go:build !windows

package main

import (
	"fmt"
	"os"
	"syscall"
)

// reexec replaces the process with the executable at exe, the new version
// just installed at the same path: same process id, same arguments, same
// environment. It returns only on error.
func reexec(exe string) error {
	if err := syscall.Exec(exe, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("re-executing %s: %w", exe, err)
	}
	return nil // not reached
}
