package notsotuf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/afero"
)

// UnsafeCacheError reports a cache directory (or its metadata directory)
// that another local user can write to: the group or others have write
// permission on it, or it belongs to another user (not root). Such a user
// could swap the files the client verified for others between the check
// and their use, or plant the names it is about to create. The client
// opens no file there through a symbolic link and uses only regular files
// (a FIFO or a device planted there is refused), but cannot defend the
// rest: see [Client.CheckCacheDir].
//
// The same holds for the directory that holds the install directory (or
// the executable, in single-executable mode): the client keeps its
// journal, staged tree, install manifest and lock there, beside the
// application; InstallParent is then set.
type UnsafeCacheError struct {
	Dir    string
	Reason string // e.g. "writable by others (mode drwxrwxrwx)"
	// InstallParent: Dir holds the install directory, not the cache.
	InstallParent bool
}

func (e *UnsafeCacheError) Error() string {
	if e.InstallParent {
		return fmt.Sprintf("%s, which holds the install directory, is %s: another user could plant the files the updater keeps beside the application there (its journal, staged tree, install manifest) and have them installed (make it writable by its owner only, e.g. chmod go-w %s, or install elsewhere)", e.Dir, e.Reason, e.Dir)
	}
	return fmt.Sprintf("cache directory %s is %s: another user could change the files the updater trusts there (make it writable by its owner only, e.g. chmod go-w %s, or choose another --cache-dir)", e.Dir, e.Reason, e.Dir)
}

// CheckCacheDir reports, as *UnsafeCacheError values (joined when several
// are unsafe), whether the cache directory, its metadata directory or the
// directory holding the install directory can be written by another
// local user. It does not block anything: the client
// works with such a directory, and [Client.Check] logs the problem as a
// warning unless CheckCacheDir was called on the client before (the
// caller then reports it itself, as `notsotuf check` and `update` do
// with a warning line). An application that wants to refuse such a
// configuration calls CheckCacheDir and stops on an error.
//
// Only the operating system's file system on Unix is checked (mode bits
// and owner); on Windows the access control lists are not read, and a
// directory that does not exist yet is fine (the client creates it
// writable by its owner only, mode 0755 before the umask). A sticky
// directory writable by others (like /tmp) is unsafe too: others cannot
// replace the client's files there but can create the names it is about
// to use.
func (c *Client) CheckCacheDir() error {
	c.cacheChecked = true
	var errs []error
	for _, d := range []string{c.cacheDir, filepath.Join(c.cacheDir, "metadata")} {
		if e := checkPrivateDir(c.fs, d, 0o022); e != nil {
			errs = append(errs, e)
		}
	}
	// A group that may write where applications are installed is an
	// administrators' group (macOS /Applications, Homebrew's /usr/local):
	// only others and another owner count there.
	if e := checkPrivateDir(c.fs, filepath.Dir(filepath.Clean(c.installDir)), 0o002); e != nil {
		e.InstallParent = true
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// checkPrivateDir returns an *UnsafeCacheError when another user than
// this process's (and root) can write to dir: it belongs to another user,
// or its mode has one of the write bits (0o022: group and others; 0o002:
// others); nil when it cannot, when dir does not exist or when fsys is
// not the operating system's.
func checkPrivateDir(fsys afero.Fs, dir string, bits fs.FileMode) *UnsafeCacheError {
	if _, ok := fsys.(*afero.OsFs); !ok || runtime.GOOS == "windows" {
		return nil
	}
	fi, err := fsys.Stat(dir) // the directory named may be a link to the real one
	if err != nil || !fi.IsDir() {
		return nil
	}
	var reasons []string
	if w := fi.Mode().Perm() & bits; w != 0 {
		who := "group and others"
		switch w {
		case 0o020:
			who = "its group"
		case 0o002:
			who = "others"
		}
		r := fmt.Sprintf("writable by %s (mode %v)", who, fi.Mode())
		if fi.Mode()&fs.ModeSticky != 0 {
			r += ", and the sticky bit does not stop them from creating the files the updater is about to use"
		}
		reasons = append(reasons, r)
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != processUID() {
		reasons = append(reasons, fmt.Sprintf("owned by another user (uid %d, this process runs as uid %d)", uid, processUID()))
	}
	if len(reasons) == 0 {
		return nil
	}
	return &UnsafeCacheError{Dir: dir, Reason: strings.Join(reasons, " and ")}
}
