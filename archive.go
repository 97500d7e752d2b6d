package notsotuf

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// Archive layout rules (shared with tufup, so either tool can read the other's
// archives):
//
//   - the tar is PAX, its first entry is the directory "./" and every member
//     is named "./<slash-separated path>" (directories end with "/");
//   - entries are sorted by name within each directory, depth first, the order
//     of a recursive walk over sorted directory listings;
//   - every entry has mtime 0 (the Unix epoch), uid/gid 0 and owner root/root,
//     so rebuilding the same tree gives the same bytes;
//   - permission bits (and setuid, setgid, sticky) are kept;
//   - symbolic links are stored as links; their target must be relative and stay
//     inside the tree (an installer refuses anything else, so packaging refuses
//     it first); empty directories are kept;
//   - devices, sockets and pipes are refused.
//
// The archive is the gzip of that tar with a deterministic header (no name,
// mtime 0) at [archiveGzipLevel].

// archiveGzipLevel is the compression level of release archives. Level 6 costs
// a third of level 9's time for a few percent of size; the patch, not the
// archive, is what most updates download.
const archiveGzipLevel = gzip.DefaultCompression

// archiveEpoch is the modification time of every tar entry.
var archiveEpoch = time.Unix(0, 0).UTC()

// WriteTar writes a deterministic tar of the directory tree dir (read through
// fsys) to w, following the tufup layout described in the package's archive
// rules: first entry "./", members "./path" in sorted order, mtime 0, owner
// root/root (uid/gid 0), modes and symlinks kept, empty directories kept. The
// same tree always gives the same bytes. Errors name the offending path.
func WriteTar(fsys afero.Fs, dir string, w io.Writer) error {
	return writeTarFilter(fsys, dir, w, nil)
}

// writeTarFilter is WriteTar of the entries of dir for which keep (given
// their slash-separated path relative to dir) is true; a nil keep keeps
// all. The client rebuilds the installed release's tar this way, leaving
// out what the user added to the install directory (see carry.go).
func writeTarFilter(fsys afero.Fs, dir string, w io.Writer, keep func(rel string) bool) error {
	root, err := lstat(fsys, dir)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	if !root.IsDir() {
		return fmt.Errorf("bundle %s: not a directory", dir)
	}
	tw := tar.NewWriter(w)
	if err := writeTarDir(fsys, tw, dir, "", root, keep); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle %s: finishing tar: %w", dir, err)
	}
	return nil
}

// WriteArchive writes the gzip-compressed deterministic tar of dir (see
// [WriteTar]) to w. It returns the size and the hex SHA-256 of the
// uncompressed tar, computed in the same pass: they are the tar_size and
// tar_hash that the repository signs so that a client can check a tar it
// rebuilt or patched.
func WriteArchive(fsys afero.Fs, dir string, w io.Writer) (tarSize int64, tarHash string, err error) {
	return writeArchive(fsys, dir, w, nil)
}

// writeArchive is WriteArchive that also copies the uncompressed tar to
// rawTar when it is not nil.
func writeArchive(fsys afero.Fs, dir string, w io.Writer, rawTar io.Writer) (int64, string, error) {
	zw, err := gzip.NewWriterLevel(w, archiveGzipLevel)
	if err != nil {
		return 0, "", err
	}
	// Header fields left at their zero values: no name, no comment, mtime 0.
	h := sha256.New()
	cw := &countWriter{}
	sinks := []io.Writer{zw, h, cw}
	if rawTar != nil {
		sinks = append(sinks, rawTar)
	}
	if err := WriteTar(fsys, dir, io.MultiWriter(sinks...)); err != nil {
		return 0, "", err
	}
	if err := zw.Close(); err != nil {
		return 0, "", fmt.Errorf("bundle %s: compressing: %w", dir, err)
	}
	return cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// writeTarDir writes the entry for the directory at fsPath (tar name
// "./"+rel+"/", or "./" for the root) and then its children.
func writeTarDir(fsys afero.Fs, tw *tar.Writer, fsPath, rel string, fi os.FileInfo, keep func(string) bool) error {
	name := "./"
	if rel != "" {
		name = "./" + rel + "/"
	}
	hdr := baseHeader(name, fi)
	hdr.Typeflag = tar.TypeDir
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle entry %s: %w", fsPath, err)
	}
	names, err := readDirNames(fsys, fsPath)
	if err != nil {
		return err
	}
	for _, n := range names {
		childPath := filepath.Join(fsPath, n)
		childRel := n
		if rel != "" {
			childRel = rel + "/" + n
		}
		if keep != nil && !keep(childRel) {
			continue
		}
		if strings.Contains(n, "\\") && filepath.Separator != '\\' {
			// A backslash would turn into a directory separator when the
			// archive is installed on Windows.
			return fmt.Errorf("bundle entry %s: name contains a backslash", childPath)
		}
		cfi, err := lstat(fsys, childPath)
		if err != nil {
			return fmt.Errorf("bundle entry %s: %w", childPath, err)
		}
		if err := writeTarEntry(fsys, tw, childPath, childRel, cfi, keep); err != nil {
			return err
		}
	}
	return nil
}

func writeTarEntry(fsys afero.Fs, tw *tar.Writer, fsPath, rel string, fi os.FileInfo, keep func(string) bool) error {
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		return writeTarDir(fsys, tw, fsPath, rel, fi, keep)
	case mode&fs.ModeSymlink != 0:
		target, err := readlink(fsys, fsPath)
		if err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		target = filepath.ToSlash(target)
		if err := checkLinkTarget(rel, target); err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		hdr := baseHeader("./"+rel, fi)
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		hdr.Mode = 0o777
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		return nil
	case mode.IsRegular():
		hdr := baseHeader("./"+rel, fi)
		hdr.Typeflag = tar.TypeReg
		hdr.Size = fi.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		f, err := fsys.Open(fsPath)
		if err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		n, err := io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("bundle entry %s: %w", fsPath, err)
		}
		if n != fi.Size() {
			return fmt.Errorf("bundle entry %s: file changed while archiving (%d bytes, expected %d)", fsPath, n, fi.Size())
		}
		return nil
	default:
		return fmt.Errorf("bundle entry %s: unsupported file type %s (only files, directories and symlinks can be released)", fsPath, mode.Type())
	}
}

// baseHeader returns the deterministic header fields shared by all entries.
func baseHeader(name string, fi os.FileInfo) *tar.Header {
	mode := int64(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return &tar.Header{
		Name:    name,
		Mode:    mode,
		ModTime: archiveEpoch,
		Uname:   "root",
		Gname:   "root",
		Format:  tar.FormatPAX,
	}
}

// checkLinkTarget refuses a symlink at tree path rel (slash-separated, no
// leading "./") whose target is absolute or leaves the tree.
func checkLinkTarget(rel, target string) error {
	if target == "" {
		return errors.New("symlink has an empty target")
	}
	if path.IsAbs(target) || filepath.IsAbs(target) || (len(target) >= 2 && target[1] == ':') {
		return fmt.Errorf("symlink target %q is absolute (only links inside the bundle can be released)", target)
	}
	joined := path.Join(path.Dir(rel), target)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return fmt.Errorf("symlink target %q points outside the bundle", target)
	}
	return nil
}

func readDirNames(fsys afero.Fs, dir string) ([]string, error) {
	f, err := fsys.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle entry %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("bundle entry %s: reading directory: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// lstat is fsys.Lstat when the file system supports it, Stat otherwise.
func lstat(fsys afero.Fs, name string) (os.FileInfo, error) {
	if ls, ok := fsys.(afero.Lstater); ok {
		fi, _, err := ls.LstatIfPossible(name)
		return fi, err
	}
	return fsys.Stat(name)
}

func readlink(fsys afero.Fs, name string) (string, error) {
	if lr, ok := fsys.(afero.LinkReader); ok {
		return lr.ReadlinkIfPossible(name)
	}
	return "", errors.New("file system cannot read symlinks")
}
