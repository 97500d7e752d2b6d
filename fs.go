package notsotuf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// defaultNow is the one place where the library reads the wall clock: it is
// the default of every Now field (Client, Repository), used only when the
// caller left that field nil.
func defaultNow() time.Time { return time.Now() }

// writeFileAtomic writes data to name so that a reader (or a crash) sees the
// old content or the new one, never a mix: see writeAtomic.
func writeFileAtomic(fsys afero.Fs, name string, data []byte, perm os.FileMode) error {
	return writeAtomic(fsys, name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic creates a temporary file beside name, lets fill write it,
// flushes it to disk and renames it over name. On any error the temporary
// file is removed and name is left as it was.
func writeAtomic(fsys afero.Fs, name string, perm os.FileMode, fill func(w io.Writer) error) error {
	return writeReplace(fsys, name, perm, true, fill)
}

// writeCacheFile is writeAtomic without the flush to disk, for cache files
// that are checked against a signed hash before every use (patch bases,
// patched tars): after a crash such a file is at worst found wrong and
// rebuilt, so forcing hundreds of megabytes to disk buys nothing.
func writeCacheFile(fsys afero.Fs, name string, fill func(w io.Writer) error) error {
	return writeReplace(fsys, name, 0o644, false, fill)
}

func writeReplace(fsys afero.Fs, name string, perm os.FileMode, sync bool, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := createTemp(fsys, dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			fsys.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("write %s: sync: %w", name, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = fsys.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = fsys.Rename(tmp, name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if sync {
		syncDir(fsys, dir)
	}
	return nil
}

// syncDir flushes a directory entry change (a rename) to disk where the
// platform allows it; errors are ignored because some systems (Windows)
// cannot open a directory for syncing and the rename already happened.
func syncDir(fsys afero.Fs, dir string) {
	if _, ok := fsys.(*afero.OsFs); !ok {
		return
	}
	if d, err := fsys.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// hashFile returns the size and hex sha256 of a regular file, streaming
// it; a symbolic link, FIFO or device is refused (see openNoFollow).
func hashFile(fsys afero.Fs, name string) (size int64, sum string, err error) {
	return hashFileLimit(fsys, name, -1)
}

// hashFileLimit is hashFile for a file that should hold at most limit
// bytes (a cached file of a signed length): a larger one is refused
// without being read. A negative limit means no limit.
func hashFileLimit(fsys afero.Fs, name string, limit int64) (size int64, sum string, err error) {
	f, err := openNoFollow(fsys, name, os.O_RDONLY, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	r := io.Reader(f)
	if limit >= 0 {
		if fi, err := f.Stat(); err == nil && fi.Size() > limit {
			return 0, "", fmt.Errorf("read %s: %d bytes, more than the %d expected", name, fi.Size(), limit)
		}
		r = io.LimitReader(f, limit+1)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", name, err)
	}
	if limit >= 0 && n > limit {
		return 0, "", fmt.Errorf("read %s: more than the %d bytes expected", name, limit)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// exists reports whether name exists (without following a final symlink
// where the Fs can tell).
func exists(fsys afero.Fs, name string) (bool, error) {
	var err error
	if l, ok := fsys.(afero.Lstater); ok {
		_, _, err = l.LstatIfPossible(name)
	} else {
		_, err = fsys.Stat(name)
	}
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// Files in the cache, the staged trees, the install lock and temporary
// files live in directories that another local user might be able to
// write to (a misconfigured cache directory, an install location shared
// with a group). The library opens every such file with openNoFollow or
// createTemp, never with fsys.Open or fsys.OpenFile directly (inside a
// staged tree, which it creates with mode 0700, extractTar creates files
// with O_EXCL), and reads them with a size cap (readCacheFile,
// hashFileLimit, or the signed length), so that a file
// planted there can neither redirect a write (a symbolic link to a file
// of the user running the update, often root), nor hang the client (a
// FIFO), nor feed it endless data (a link to /dev/zero).

// openNoFollow opens name like fsys.OpenFile, but only ever a regular file
// at name itself:
//
//   - name is checked with Lstat first: a symbolic link, directory, FIFO,
//     socket or device is refused, whatever it points to;
//   - when name does not exist and flag has O_CREATE, the open adds O_EXCL,
//     which never follows a symbolic link (POSIX; CREATE_NEW on Windows):
//     a link planted between the check and the open makes it fail, and
//     the check is made once more;
//   - on the operating system's file system the open also carries
//     O_NOFOLLOW and O_NONBLOCK where they exist (not on Windows), so a
//     link swapped in after the check is not followed and a FIFO swapped
//     in does not block the open;
//   - after the open, the file itself (fstat) must be a regular file and,
//     on the operating system's file system, the very file Lstat found
//     (os.SameFile). On Windows, which has no O_NOFOLLOW, this is what
//     catches a link swapped in between the check and the open: the open
//     may then have followed it, but the file is closed untouched,
//     because O_TRUNC is applied only after the checks;
//   - a file opened for writing must have a single link (a hard link
//     planted to another file is refused), where the system reports links.
//
// A refusal is an *fs.PathError whose Err says what the file is (errors.Is
// with errNotRegular). The checks cover the last element of name; the
// directories above it are the caller's (see Client.CheckCacheDir).
func openNoFollow(fsys afero.Fs, name string, flag int, perm os.FileMode) (afero.File, error) {
	_, osfs := fsys.(*afero.OsFs)
	for try := 0; ; try++ {
		before, err := lstat(fsys, name)
		switch {
		case err == nil:
			if !before.Mode().IsRegular() {
				return nil, notRegular(name, before.Mode())
			}
			if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
			}
		case errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0:
			before = nil
		default:
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = &fs.PathError{Op: "open", Path: name, Err: pe.Err} // as an open would say
			}
			return nil, err
		}
		oflag := flag &^ os.O_TRUNC
		if before == nil {
			oflag |= os.O_EXCL
		}
		if osfs {
			oflag |= openNoFollowFlags
		}
		f, err := fsys.OpenFile(name, oflag, perm)
		if err != nil {
			if before == nil && flag&os.O_EXCL == 0 && errors.Is(err, fs.ErrExist) && try == 0 {
				continue // created meanwhile: look at what it is
			}
			if fi, lerr := lstat(fsys, name); lerr == nil && !fi.Mode().IsRegular() {
				return nil, notRegular(name, fi.Mode()) // swapped in after the check
			}
			return nil, err
		}
		if err := checkOpened(fsys, osfs, f, name, before, flag); err != nil {
			f.Close()
			return nil, err
		}
		if flag&os.O_TRUNC != 0 {
			if err := f.Truncate(0); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	}
}

// checkOpened is the check of openNoFollow after the open.
func checkOpened(fsys afero.Fs, osfs bool, f afero.File, name string, before fs.FileInfo, flag int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return notRegular(name, fi.Mode())
	}
	if osfs {
		ref := before
		if ref == nil {
			if ref, err = lstat(fsys, name); err != nil {
				return err
			}
		}
		if !os.SameFile(ref, fi) {
			return &fs.PathError{Op: "open", Path: name, Err: errReplaced}
		}
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		if n, ok := linkCount(fi); ok && n > 1 {
			return &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: it has %d hard links, refusing to write to it (another user may have linked it to another file: remove it)", errNotRegular, n)}
		}
	}
	return nil
}

// errNotRegular is matched (errors.Is) by openNoFollow's refusals.
var errNotRegular = errors.New("not a regular file")

// errReplaced: the file changed between openNoFollow's check and its open.
var errReplaced = fmt.Errorf("%w: replaced while being opened (another user may be tampering with the directory)", errNotRegular)

type notRegularError struct{ mode fs.FileMode }

func (e *notRegularError) Error() string {
	what := "a " + fileKind(e.mode)
	return what + ", not a regular file: refused (another user may have planted it: remove it)"
}

func (e *notRegularError) Is(target error) bool { return target == errNotRegular }

func notRegular(name string, mode fs.FileMode) error {
	return &fs.PathError{Op: "open", Path: name, Err: &notRegularError{mode}}
}

// fileKind names the type of a file mode in words.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// createTemp creates a new file in dir, named after pattern with its last
// "*" replaced by a random string (as os.CreateTemp), through
// openNoFollow with O_EXCL: a name planted in advance is never followed
// or reused, another is tried.
func createTemp(fsys afero.Fs, dir, pattern string) (afero.File, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndexByte(pattern, '*'); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64()%1e12, 10)+suffix)
		f, err := openNoFollow(fsys, name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil || try >= 100 || !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// readCacheFile reads a file the library keeps (cached metadata, records,
// journals) through openNoFollow, refusing one of more than max bytes
// without reading it.
func readCacheFile(fsys afero.Fs, name string, max int64) ([]byte, error) {
	f, err := openNoFollow(fsys, name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, name, max)
}

// openRegular opens name for reading, following symbolic links, and
// refuses anything but a regular file without opening it: a FIFO planted
// there would block the open forever (the repository's own files).
func openRegular(fsys afero.Fs, name string) (afero.File, error) {
	fi, err := fsys.Stat(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = &fs.PathError{Op: "open", Path: name, Err: pe.Err} // as an open would say
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(name, fi.Mode())
	}
	return fsys.Open(name)
}

// readStateJSON decodes the JSON state file name (a journal, a record the
// library keeps; at most max bytes): nil and no error when there is none;
// what names the file in a decoding error ("stage record"). A file that
// another user may have planted is refused (see checkStateOwner).
func readStateJSON[T any](fsys afero.Fs, name string, max int64, what string) (*T, error) {
	f, err := openNoFollow(fsys, name, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkStateOwner(fsys, f, name, what); err != nil {
		return nil, err
	}
	data, err := readCapped(f, name, max)
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return v, nil
}

// checkStateOwner refuses the state file f (at name) when its directory is
// writable by others (a sticky /tmp-like directory: anyone may create
// names there) and the file belongs to another user than root, this
// process's and the directory's owner: such a user could plant a journal
// and a staged tree for the next recover to swap in, or an install
// manifest vouching for a directory that is not the application's. In a
// directory only its owner and group may write to, they are trusted (a
// team sharing an install). Where the file system gives no owner
// (Windows, in-memory), nothing is checked.
func checkStateOwner(fsys afero.Fs, f afero.File, name, what string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	uid, ok := fileOwner(fi)
	if !ok || uid == 0 || uid == processUID() {
		return nil
	}
	dfi, err := fsys.Stat(filepath.Dir(name))
	if err != nil {
		return err
	}
	if dfi.Mode().Perm()&0o002 == 0 {
		return nil // only its owner and group may write there: they are trusted
	}
	if duid, ok := fileOwner(dfi); ok && duid == uid {
		return nil
	}
	return fmt.Errorf("%s %s belongs to another user (uid %d) who may have planted it: not acted on (remove it if it is yours; see Client.CheckCacheDir)", what, name, uid)
}

// readCapped reads f whole, refusing more than max bytes.
func readCapped(f afero.File, name string, max int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("read %s: %d bytes, more than the %d allowed", name, fi.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read %s: more than the %d bytes allowed", name, max)
	}
	return data, nil
}

// ReadTrustedRoot reads a trusted root.json from name in fsys (nil means
// the operating system's file system), for [ClientConfig.TrustedRoot]:
// name must be a regular file (a symbolic link to one is followed) of at
// most 512 KiB, the client's cap on root metadata. A FIFO, a device
// (/dev/zero) or a directory is refused without blocking and without
// being read.
func ReadTrustedRoot(fsys afero.Fs, name string) ([]byte, error) {
	if fsys == nil {
		fsys = afero.NewOsFs()
	}
	fi, err := fsys.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: it is a %s", errNotRegular, fileKind(fi.Mode()))}
	}
	flag := os.O_RDONLY
	if _, ok := fsys.(*afero.OsFs); ok {
		flag |= openNonBlockFlag // a FIFO swapped in after the Stat must not block the open
	}
	f, err := fsys.OpenFile(name, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: it is a %s", errNotRegular, fileKind(fi.Mode()))}
	}
	return readCapped(f, name, maxRootLength)
}
