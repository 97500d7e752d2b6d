package notsotuf

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/afero"
)

// A file system mounted inside the install directory (a container volume
// at app/data, a btrfs subvolume) moves with the directory when
// it is renamed, so a tree swap would take it to the previous tree's name,
// where the clean-up deletes the files in it. The swap is refused instead,
// before it changes anything: nothing is lost, and the error says what to
// move. Detected by device number (Unix); on Windows, where afero gives no
// device, a mounted folder is not detected.

// maxMountReport bounds the mount points an error names.
const maxMountReport = 5

// checkNoMounts returns an error naming the directories of the tree at dir
// that are on another file system than dir itself.
func checkNoMounts(fsys afero.Fs, dir string) error {
	fi, err := lstat(fsys, dir)
	if err != nil || !fi.IsDir() {
		return nil // nothing to replace, or not a tree: other checks say so
	}
	root, ok := fileIdentity(fi)
	if !ok {
		return nil
	}
	var found []string
	var walk func(d string) error
	walk = func(d string) error {
		names, err := readDirNames(fsys, d)
		if err != nil {
			return err
		}
		for _, name := range names {
			p := filepath.Join(d, name)
			fi, err := lstat(fsys, p)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				// Files are not judged by device: overlayfs over layers
				// on several file systems reports the layer's device for
				// files. A bind-mounted file is not deleted by the
				// clean-up (unlinking a mount point fails); it is copied.
				continue
			}
			if id, ok := fileIdentity(fi); ok && id.Dev != root.Dev {
				found = append(found, p)
				continue // not entered: the other file system is not ours
			}
			if err := walk(p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return fmt.Errorf("looking for mount points in %s: %w", dir, err)
	}
	if len(found) == 0 {
		return nil
	}
	more := ""
	if len(found) > maxMountReport {
		more = fmt.Sprintf(" and %d more", len(found)-maxMountReport)
		found = found[:maxMountReport]
	}
	return &MountError{Dir: dir, Paths: found, more: more}
}

// MountError is returned when the install directory holds another file
// system (a mount point, a container volume, a btrfs subvolume): an
// update replaces the directory as a whole and would move it away, so
// nothing is done. Mount it outside the install directory and point the
// application there.
type MountError struct {
	Dir   string   // the install directory
	Paths []string // the mount points found (at most a few)
	more  string
}

func (e *MountError) Error() string {
	return fmt.Sprintf("%s holds another file system at %s%s: an update replaces the directory as a whole and would move it away; mount it outside the install directory and point the application there (nothing was changed)",
		e.Dir, strings.Join(e.Paths, ", "), e.more)
}
