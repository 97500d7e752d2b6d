package notsotuf

import (
	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
)

// syncFilesystem flushes everything written to the file system holding dir
// with one syncfs(2) call, when fsys is the operating system's: on a tree
// of thousands of new files that is one journal commit instead of one per
// file. It reports
// false when it could not (another Fs, or an error), and the caller then
// syncs file by file.
func syncFilesystem(fsys afero.Fs, dir string) bool {
	if _, ok := fsys.(*afero.OsFs); !ok {
		return false
	}
	f, err := fsys.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return unix.Syncfs(int(fd.Fd())) == nil
}
