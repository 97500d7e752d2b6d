package notsotuf

import (
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// startDetached starts the helper without a console window
// (CREATE_NO_WINDOW) and in a process group of its own, so that it
// survives the application's exit and a Ctrl+C in its console.
func startDetached(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{HideWindow: true,
		CreationFlags: windows.CREATE_NO_WINDOW | windows.CREATE_NEW_PROCESS_GROUP}
	return cmd.Start()
}

// startRestart starts the application again from the helper, in a process
// group of its own (a console program gets a console of its own).
func startRestart(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
	return cmd.Start()
}

// processStart returns the creation time of the process pid (a FILETIME),
// 0 when it cannot tell.
func processStart(pid int) uint64 {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return 0
	}
	defer windows.CloseHandle(h)
	return creationTime(h)
}

func creationTime(h windows.Handle) uint64 {
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return 0
	}
	return uint64(created.HighDateTime)<<32 | uint64(created.LowDateTime)
}

// waitExit waits until the process pid has exited, at most timeout
// (OpenProcess, then WaitForSingleObject), and reports whether it did. A
// process that cannot be opened has exited; one with another creation
// time than start (not 0) reuses the pid of one that has.
func waitExit(pid int, start uint64, timeout time.Duration) bool {
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return true
	}
	defer windows.CloseHandle(h)
	if start != 0 {
		if c := creationTime(h); c != 0 && c != start {
			return true
		}
	}
	deadline := defaultNow().Add(timeout)
	for {
		wait := deadline.Sub(defaultNow())
		if wait > time.Hour {
			wait = time.Hour
		}
		if wait < 0 {
			wait = 0
		}
		ev, err := windows.WaitForSingleObject(h, uint32(wait/time.Millisecond))
		if err != nil {
			return false
		}
		if ev == windows.WAIT_OBJECT_0 {
			return true
		}
		if !defaultNow().Before(deadline) {
			return false
		}
	}
}

// processRunning reports whether the process pid runs.
func processRunning(pid int) bool { return !waitExit(pid, 0, 0) }
