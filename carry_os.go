package notsotuf

import (
	"errors"
	"os"

	"github.com/spf13/afero"
)

// errNoHardLink: this Fs cannot make hard links; the caller copies.
var errNoHardLink = errors.New("hard links not supported")

// hardLink makes newname a hard link to the regular file oldname, on the
// operating system's file system only (afero has no hard links): the one
// place besides the other OS helpers where the library calls os for a
// file. Elsewhere, across file systems, or where the system refuses (FAT,
// Linux's protected_hardlinks for a file of another user), it fails and
// the caller copies the file.
func hardLink(fsys afero.Fs, oldname, newname string) error {
	if _, ok := fsys.(*afero.OsFs); !ok {
		return errNoHardLink
	}
	return os.Link(oldname, newname)
}
