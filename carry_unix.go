//go:build linux || darwin

package notsotuf

import (
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
)

// These helpers keep what afero cannot express of a file carried into a
// new tree (carry.go): extended attributes, the modification time of a
// symbolic link, and the owner. They act on the operating system's file
// system only (*afero.OsFs) and do nothing on another Fs.

// copyXattrs copies the extended attributes of src to dst (neither
// followed if a symbolic link). Attributes the system does not let this
// process set (security.*, trusted.* without privileges, user.* on a
// symbolic link on Linux) are skipped; the first other failure is
// returned after the rest are tried.
func copyXattrs(fsys afero.Fs, src, dst string) error {
	if _, ok := fsys.(*afero.OsFs); !ok {
		return nil
	}
	names, err := listXattrs(src)
	if err != nil {
		if ignorableXattrErr(err) {
			return nil
		}
		return err
	}
	var first error
	for _, name := range names {
		val, err := getXattr(src, name)
		if err == nil {
			err = unix.Lsetxattr(dst, name, val, 0)
		}
		if err != nil && !ignorableXattrErr(err) && first == nil {
			first = &fs.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	return first
}

func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENODATA)
}

// listXattrs returns the names of the extended attributes of p.
func listXattrs(p string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(p, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		m, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range splitNul(buf[:m]) {
			names = append(names, string(b))
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		m, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:m], nil
	}
}

func splitNul(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

// setLinkTimes sets the modification (and access) time of the symbolic
// link p itself.
func setLinkTimes(fsys afero.Fs, p string, mtime time.Time) {
	if _, ok := fsys.(*afero.OsFs); !ok {
		return
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// copyOwner gives dst (not followed) the owner and group of the file fi
// describes, when this process runs as root and they differ from its own:
// a copy made by root would otherwise belong to root.
func copyOwner(fsys afero.Fs, dst string, fi fs.FileInfo) error {
	if _, ok := fsys.(*afero.OsFs); !ok || unix.Geteuid() != 0 {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 && st.Gid == 0 {
		return nil
	}
	return unix.Lchown(dst, int(st.Uid), int(st.Gid))
}
