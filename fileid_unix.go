//go:build unix

package notsotuf

import (
	"io/fs"
	"syscall"
)

// fileIdentity returns the device and inode of the file fi describes, when
// fi comes from the operating system (afero.OsFs and wrappers of it).
func fileIdentity(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st == nil {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, true
}
