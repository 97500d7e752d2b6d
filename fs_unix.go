//go:build unix

package notsotuf

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// openNoFollowFlags are added by openNoFollow on the operating system's file
// system: the open refuses a symbolic link as the last element of the name
// (ELOOP) and does not wait for a FIFO's other end.
const openNoFollowFlags = unix.O_NOFOLLOW | unix.O_NONBLOCK

// openNonBlockFlag keeps an open of a FIFO from blocking.
const openNonBlockFlag = unix.O_NONBLOCK

// linkCount returns the number of hard links of a file, when fi tells.
func linkCount(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}

// fileOwner returns the user id owning a file, when fi tells.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// processUID is the effective user id of this process.
func processUID() int { return unix.Geteuid() }
