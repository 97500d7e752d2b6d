package notsotuf

import (
	"bytes"
	"os"
	"strconv"
)

// procInfo reads /proc/PID/stat: the start time of the process (clock
// ticks since boot) and whether it is a zombie. Reading /proc is part of
// the process seam (helper.go), not a file of the update: it goes to the
// operating system whatever the client's Fs.
func procInfo(pid int) (start uint64, zombie, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, false
	}
	// pid (comm) state ppid ... : comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false, false
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, false, false
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, false, false
	}
	return start, string(f[0]) == "Z" || string(f[0]) == "X", true
}
