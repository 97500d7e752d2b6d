package notsotuf

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrForeignInstallDir is wrapped by the error of [Client.Install] (a
// [*InstallDirError]) when the install directory is not empty and the
// client cannot tell that it holds the application: replacing it would
// delete what it holds, so nothing is changed. Set ClientConfig.Adopt to
// replace it anyway (a first install over a copy made by hand).
var ErrForeignInstallDir = errors.New("the install directory does not hold the application")

// InstallDirError is the error of [Client.Install] for an install path it
// refuses to replace. It wraps [ErrForeignInstallDir].
type InstallDirError struct {
	Path    string // ClientConfig.InstallDir
	App     string
	Version string // the installed version the client compared it with
	Reason  string // why, in a few words
	// Adoptable: ClientConfig.Adopt would let Install replace it (false
	// for what no install can replace: a directory in single-executable
	// mode, a device).
	Adoptable bool
}

func (e *InstallDirError) Error() string {
	if !e.Adoptable {
		return fmt.Sprintf("install %s: %s", e.Path, e.Reason)
	}
	return fmt.Sprintf("install %s: refusing to replace it, which would delete what it holds: it is not empty and the client cannot tell that it holds %s %s: %s", e.Path, e.App, e.Version, e.Reason)
}

func (e *InstallDirError) Unwrap() error { return ErrForeignInstallDir }

// Hint says how to go on.
func (e *InstallDirError) Hint() string {
	if !e.Adoptable {
		return "in single-executable mode --install-dir is the path of the executable file itself"
	}
	return "check --install-dir (and --current); if it is the application's directory (copied by hand, or changed since), run again with --adopt (ClientConfig.Adopt) to replace its content with the release"
}

// checkInstallDir refuses to go on with an install over a path that does
// not hold the application (see [ErrForeignInstallDir]). Tree mode: the
// install directory is accepted when it is missing or empty; or its
// install manifest names this app and the tree still has every entry the
// manifest lists (with the same type; more entries are fine); or its
// rebuilt tar is the signed tar of the installed version; or it holds
// every entry of the installed version's release archive, with the same
// content (more entries are fine). The archive is the verified one in the
// cache, or, when the cache has none, downloaded (and verified) for this:
// a tree copied by hand from a tufup archive, which signs no tar hash,
// updates without a flag. Single-executable mode: the path is accepted
// when it is missing, or a regular file whose content the install
// manifest records, or the file of the installed version's archive; a
// directory or a device is refused even with Adopt. Adopt accepts the
// rest. The check runs before anything of the update is downloaded.
func (c *Client) checkInstallDir(ctx context.Context, prog *progress) error {
	if c.singleExe {
		return c.checkInstalledExe(ctx, prog)
	}
	return c.checkInstalledTree(ctx, prog)
}

func (c *Client) checkInstalledTree(ctx context.Context, prog *progress) error {
	dir, err := resolvePath(c.fs, c.installDir) // a symbolic link to the tree: check the tree
	if err != nil {
		return fmt.Errorf("install %s: %w", c.installDir, err)
	}
	fi, err := lstat(c.fs, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("install %s: %w", c.installDir, err)
	}
	cur := c.Current()
	refuse := func(reasons ...string) error {
		return &InstallDirError{Path: c.installDir, App: c.app, Version: cur.String(), Reason: strings.Join(reasons, "; "), Adoptable: true}
	}
	if !fi.IsDir() {
		if c.adopt {
			return nil
		}
		return refuse("it is a file, not a directory")
	}
	if empty, err := emptyDir(c.fs, dir); err != nil {
		return fmt.Errorf("install %s: %w", c.installDir, err)
	} else if empty {
		return nil
	}
	if c.adopt {
		c.log.Info("adopting the install directory: it will be replaced", "dir", c.installDir)
		return nil
	}
	mpath := c.installer().manifestPath()
	ok, why, err := checkTreeManifest(c.fs, dir, mpath, c.app)
	if err != nil {
		why = err.Error()
	}
	if ok {
		return nil
	}
	reasons := []string{why}
	rel := c.currentRelease(cur)
	if rel == nil {
		return refuse(append(reasons, fmt.Sprintf("the repository has no release %s to compare it with", cur))...)
	}
	if size, hash := rel.tarHash(); hash != "" {
		if ok, _ := treeIsTar(c.fs, dir, size, hash, nil); ok {
			c.writeProvenManifest(cur, func(emit func(installedEntry) error) error { return treeEntries(c.fs, dir, emit) })
			return nil
		}
	}
	r, name, limit, err := c.openReleaseTar(ctx, rel, prog, func() error {
		return refuse(append(reasons, fmt.Sprintf("the repository has no archive of %s to compare it with", cur))...)
	})
	if err != nil {
		return err
	}
	defer r.Close()
	var shipped []installedEntry
	ok, why, err = treeHoldsTar(ctx, c.fs, dir, r, name, limit, func(e installedEntry) { shipped = append(shipped, e) })
	if err != nil {
		return fmt.Errorf("install %s: comparing with %s: %w", c.installDir, name, err)
	}
	if ok {
		c.log.Info("the install directory holds the installed version's release", "dir", c.installDir, "version", cur)
		c.writeProvenManifest(cur, func(emit func(installedEntry) error) error {
			for _, e := range shipped {
				if err := emit(e); err != nil {
					return err
				}
			}
			return nil
		})
		return nil
	}
	return refuse(append(reasons, why)...)
}

// writeProvenManifest writes the install manifest of a tree that the
// install directory check proved to be the installed release cur (its
// entries are what that release shipped): the update then keeps what the
// user added to it (carry.go). Best effort: without it the tree is
// replaced as a whole.
func (c *Client) writeProvenManifest(cur Version, entries func(emit func(installedEntry) error) error) {
	mpath := c.installer().manifestPath()
	err := writeAtomic(c.fs, mpath, 0o644, func(w io.Writer) error {
		return encodeManifest(w, c.app, cur.String(), entries)
	})
	if err != nil {
		c.log.Warn("cannot write the install manifest of the installed release (the update replaces the directory as a whole)", "file", mpath, "err", err)
	}
}

func (c *Client) checkInstalledExe(ctx context.Context, prog *progress) error {
	fi, err := c.fs.Stat(c.installDir) // through a symbolic link: its target
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("install %s: %w", c.installDir, err)
	}
	cur := c.Current()
	if fi.IsDir() {
		return &InstallDirError{Path: c.installDir, App: c.app, Version: cur.String(), Reason: "it is a directory, not an executable file"}
	}
	if !fi.Mode().IsRegular() {
		return &InstallDirError{Path: c.installDir, App: c.app, Version: cur.String(), Reason: fmt.Sprintf("it is not a regular file (%s)", fi.Mode().Type())}
	}
	if c.adopt {
		return nil
	}
	refuse := func(reasons ...string) error {
		return &InstallDirError{Path: c.installDir, App: c.app, Version: cur.String(), Reason: strings.Join(reasons, "; "), Adoptable: true}
	}
	// The file is hashed only once its size fits what it is compared
	// with: a mistaken --install-dir naming a huge file is refused at once.
	size, sum := fi.Size(), ""
	var hashErr error
	hash := func() (string, error) {
		if sum != "" || hashErr != nil {
			return sum, hashErr
		}
		n, s, err := hashFile(c.fs, c.installDir)
		if err == nil && n != size {
			err = fmt.Errorf("%s changed while it was read", c.installDir)
		}
		sum, hashErr = s, err
		return sum, hashErr
	}
	ok, why, err := checkExeManifest(c.fs, c.installer().manifestPath(), c.app, size, hash)
	if hashErr != nil {
		return fmt.Errorf("install %s: %w", c.installDir, hashErr)
	}
	if err != nil {
		why = err.Error()
	}
	if ok {
		return nil
	}
	reasons := []string{why}
	rel := c.currentRelease(cur)
	if rel == nil {
		return refuse(append(reasons, fmt.Sprintf("the repository has no release %s to compare it with", cur))...)
	}
	// The signed tar of a one-file release is the file and a few headers:
	// a file of another size is not it, no download needed to tell.
	if tarSize, hash := rel.tarHash(); hash != "" && (size > tarSize || size < tarSize-maxExeTarOverhead) {
		return refuse(append(reasons, fmt.Sprintf("its size (%d bytes) does not fit the signed tar of %s (%d bytes)", size, cur, tarSize))...)
	}
	r, name, limit, err := c.openReleaseTar(ctx, rel, prog, func() error {
		return refuse(append(reasons, fmt.Sprintf("the repository has no archive of %s to compare it with", cur))...)
	})
	if err != nil {
		return err
	}
	defer r.Close()
	want, err := tarSingleFile(ctx, r, name, limit)
	if err != nil {
		return fmt.Errorf("install %s: comparing with %s: %w", c.installDir, name, err)
	}
	if want.Size == size {
		s, err := hash()
		if err != nil {
			return fmt.Errorf("install %s: %w", c.installDir, err)
		}
		if want.SHA256 == s {
			return nil
		}
	}
	return refuse(append(reasons, fmt.Sprintf("its content is not the executable of %s", cur))...)
}

// maxExeTarOverhead bounds what a one-file release tar holds beside the
// file's bytes: the top directory's and the file's headers (with PAX
// records), padding and the end-of-archive blocks.
const maxExeTarOverhead = 64 << 10

// currentRelease returns the release v in the trusted targets, nil if the
// repository has none.
func (c *Client) currentRelease(v Version) *clientRelease {
	if c.tuf.trusted == nil || c.tuf.trusted.Targets[metadata.TARGETS] == nil {
		return nil
	}
	return releaseSetOf(c.tuf.targets(), c.app, c.platform, c.log).at(v)
}

// openReleaseTar opens the tar of the installed release rel (see
// releaseTar) to compare the install directory with; when the repository
// has none it returns the error of missing.
func (c *Client) openReleaseTar(ctx context.Context, rel *clientRelease, prog *progress, missing func() error) (io.ReadCloser, string, int64, error) {
	open, name, limit, err := c.releaseTar(ctx, rel, prog)
	if err != nil {
		return nil, "", 0, err
	}
	if open == nil {
		return nil, "", 0, missing()
	}
	r, err := open()
	if err != nil {
		return nil, "", 0, fmt.Errorf("install %s: %w", c.installDir, err)
	}
	return r, name, limit, nil
}

// releaseTar returns how to read the uncompressed tar of rel from a
// verified copy: the cached tar when it has the signed tar hash, else the
// cached archive when it has the signed hash, else the archive downloaded
// (and verified) into the cache now. limit bounds the uncompressed tar.
// open is nil when the repository has no archive of rel.
func (c *Client) releaseTar(ctx context.Context, rel *clientRelease, prog *progress) (open func() (io.ReadCloser, error), name string, limit int64, err error) {
	size, hash := rel.tarHash()
	if hash != "" {
		p := c.cachePath(tarName(c.app, rel.version))
		if n, h, err := hashFileLimit(c.fs, p, size); err == nil && h == hash && n == size {
			return func() (io.ReadCloser, error) { return openNoFollow(c.fs, p, os.O_RDONLY, 0) }, p, size, nil
		}
	}
	if rel.archive == nil {
		return nil, "", 0, nil
	}
	want := plannedFile(rel.archive)
	p := c.cachePath(want.Name)
	if n, h, err := hashFileLimit(c.fs, p, want.Length); err != nil || h != want.SHA256 || n != want.Length {
		c.log.Info("downloading the installed version's archive to compare the install directory with it", "archive", want.Name, "bytes", want.Length)
		prog.grow(want.Length)
		if err := c.remote.fetchTargetFile(ctx, c.fs, c.tuf.targetPath(rel.archive), p, want.Length, want.SHA256, prog); err != nil {
			return nil, "", 0, err
		}
	}
	limit = size
	if limit == 0 {
		limit = want.Length * maxDeflateRatio
	}
	return func() (io.ReadCloser, error) { return openNoFollow(c.fs, p, os.O_RDONLY, 0) }, p, limit, nil
}

// emptyDir reports whether the directory dir has no entries.
func emptyDir(fsys afero.Fs, dir string) (bool, error) {
	f, err := fsys.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
		return true, nil
	}
	return false, err
}

// treeIsTar reports whether the tree at dir, rebuilt with WriteTar (of
// the entries keep accepts, when not nil: see writeTarFilter), is the tar
// of the given size and sha256. A walk first checks that the
// tree's files and headers fit in size, so that a big tree that cannot be
// the release (a home directory) is not read. err is WriteTar's failure
// (an unreadable file...), if it ran.
func treeIsTar(fsys afero.Fs, dir string, size int64, hash string, keep func(rel string) bool) (bool, error) {
	var n int64
	errTooBig := errors.New("larger than the tar")
	err := afero.Walk(fsys, dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if keep != nil && p != dir {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if !keep(filepath.ToSlash(rel)) {
				if fi.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		n += 512 // a header at least
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
		if n > size {
			return errTooBig
		}
		return nil
	})
	if err != nil {
		return false, nil
	}
	h := sha256.New()
	lw := &limitedWriter{w: h, left: size}
	if err := writeTarFilter(fsys, dir, lw, keep); err != nil {
		if errors.Is(err, errWriteLimit) {
			return false, nil
		}
		return false, err
	}
	return lw.left == 0 && hex.EncodeToString(h.Sum(nil)) == hash, nil
}

// limitedWriter fails once more than left bytes are written.
type limitedWriter struct {
	w    io.Writer
	left int64
}

var errWriteLimit = errors.New("write limit reached")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errWriteLimit
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// releaseTarReader returns a tar reader over r (a tar or gzip-compressed
// tar) that stops after limit uncompressed bytes and when ctx is done.
func releaseTarReader(ctx context.Context, r io.Reader, name string) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return gz, func() { gz.Close() }, nil
	}
	return br, func() {}, nil
}

// treeHoldsTar reports whether the tree at dir holds every entry of the
// tar (or tar.gz) read from r (calling found, if set, for each of them), with the same type and content (regular
// files: size and sha256; symbolic links: target; hard links: the content
// of the file they name). Entries of the tree beyond the tar's are
// allowed; modes are not compared (an extraction by hand applies the
// umask). reason names the first entry that differs.
func treeHoldsTar(ctx context.Context, fsys afero.Fs, dir string, r io.Reader, name string, limit int64, found func(installedEntry)) (ok bool, reason string, err error) {
	src, done, err := releaseTarReader(ctx, r, name)
	if err != nil {
		return false, "", err
	}
	defer done()
	capped := &capReader{r: src, limit: limit}
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: capped})
	files := 0 // files and links matched: directories alone prove nothing
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if files == 0 {
				return false, "the release has no file to compare with", nil
			}
			return true, "", nil
		}
		if err != nil {
			if capped.exceeded {
				return false, "", fmt.Errorf("%s: uncompressed archive exceeds the limit of %d bytes", name, limit)
			}
			return false, "", fmt.Errorf("%s: reading tar: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		rel, err := cleanEntryName(hdr.Name)
		if err != nil {
			return false, fmt.Sprintf("the release has an entry %q that no install accepts", hdr.Name), nil
		}
		if rel == "" {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := lstat(fsys, p)
		if err != nil {
			return false, fmt.Sprintf("%q of the release is missing", rel), nil
		}
		differs := fmt.Sprintf("%q differs from the release's", rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if !fi.IsDir() {
				return false, differs, nil
			}
		case tar.TypeReg:
			if !fi.Mode().IsRegular() || fi.Size() != hdr.Size {
				return false, differs, nil
			}
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				return false, "", fmt.Errorf("%s: entry %q: %w", name, hdr.Name, err)
			}
			_, sum, err := hashFile(fsys, p)
			if err != nil {
				return false, "", err
			}
			if sum != hex.EncodeToString(h.Sum(nil)) {
				return false, differs, nil
			}
		case tar.TypeSymlink:
			t, err := readlink(fsys, p)
			if fi.Mode()&fs.ModeSymlink == 0 || err != nil || filepath.ToSlash(t) != hdr.Linkname {
				return false, differs, nil
			}
		case tar.TypeLink:
			target, err := cleanEntryName(hdr.Linkname)
			if err != nil || !fi.Mode().IsRegular() {
				return false, differs, nil
			}
			tp := filepath.Join(dir, filepath.FromSlash(target))
			if tfi, err := lstat(fsys, tp); err != nil || !tfi.Mode().IsRegular() {
				return false, differs, nil
			}
			n1, s1, err1 := hashFile(fsys, p)
			n2, s2, err2 := hashFile(fsys, tp)
			if err1 != nil || err2 != nil || n1 != n2 || s1 != s2 {
				return false, differs, nil
			}
		default:
			return false, fmt.Sprintf("the release has an entry %q of a type no install accepts", hdr.Name), nil
		}
		if hdr.Typeflag != tar.TypeDir {
			files++
		}
		if found != nil {
			e := installedEntry{Path: rel, Type: "file", Mode: fmt.Sprintf("%04o", hdr.Mode&0o777), Size: hdr.Size}
			switch hdr.Typeflag {
			case tar.TypeDir:
				e.Type, e.Size = "dir", 0
			case tar.TypeSymlink:
				e.Type, e.Mode, e.Size, e.Link = "symlink", "", 0, hdr.Linkname
			case tar.TypeLink:
				e.Size = fi.Size()
			}
			found(e)
		}
	}
}

// tarSingleFile returns the size and sha256 of the one regular file of a
// single-executable release's tar (or tar.gz) read from r.
func tarSingleFile(ctx context.Context, r io.Reader, name string, limit int64) (installedEntry, error) {
	src, done, err := releaseTarReader(ctx, r, name)
	if err != nil {
		return installedEntry{}, err
	}
	defer done()
	capped := &capReader{r: src, limit: limit}
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: capped})
	var found *installedEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return installedEntry{}, fmt.Errorf("%s: reading tar: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if found != nil {
			return installedEntry{}, fmt.Errorf("%s: more than one file: not a single-executable release", name)
		}
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			return installedEntry{}, fmt.Errorf("%s: entry %q: %w", name, hdr.Name, err)
		}
		found = &installedEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	if found == nil {
		return installedEntry{}, fmt.Errorf("%s: no file: not a single-executable release", name)
	}
	return *found, nil
}
