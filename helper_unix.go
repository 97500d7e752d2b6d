//go:build unix

package notsotuf

import (
	"errors"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startDetached starts the helper in a new session (setsid), so that it
// survives the application's exit and its terminal's hangup; its standard
// streams are the null device (exec.Cmd's default).
func startDetached(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd.Start()
}

// startRestart starts the application again from the helper, in a session
// of its own too.
func startRestart(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd.Start()
}

// processStart returns when the process pid started, in a unit of the
// system's (see procInfo), 0 when it cannot tell.
func processStart(pid int) uint64 {
	start, _, ok := procInfo(pid)
	if !ok {
		return 0
	}
	return start
}

// waitExit waits until the process pid has exited, at most timeout, and
// reports whether it did. It polls kill(pid, 0) ten times a second; a
// zombie (exited, not yet reaped by its parent) counts as exited, and so
// does a process with another start time than start (not 0): its pid was
// reused after the application exited. Where the start time is unknown
// (see procInfo), a pid reused within the poll interval makes the helper
// wait for that other process too, up to the timeout.
func waitExit(pid int, start uint64, timeout time.Duration) bool {
	deadline := defaultNow().Add(timeout)
	for {
		if !processAlive(pid, start) {
			return true
		}
		if !defaultNow().Before(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func processAlive(pid int, start uint64) bool {
	err := unix.Kill(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return false
	}
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	s, zombie, ok := procInfo(pid)
	if !ok {
		return true
	}
	return !zombie && (start == 0 || s == start)
}

// processRunning reports whether the process pid runs (not a zombie).
func processRunning(pid int) bool { return processAlive(pid, 0) }
