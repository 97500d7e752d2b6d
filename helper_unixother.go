//go:build unix && !linux && !darwin

package notsotuf

// procInfo: the start time of a process is not read on this system (see
// waitExit for what that means).
func procInfo(pid int) (start uint64, zombie, ok bool) { return 0, false, false }
