package notsotuf

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/afero"
)

// ErrUnsafeArchive is wrapped by every extraction error caused by the content
// of an archive (as opposed to an I/O failure): an entry that breaks one of
// the rules of [extractTar], or an archive larger than its limit.
var ErrUnsafeArchive = errors.New("unsafe archive")

// maxExtractErrors is how many rule violations extraction collects before it
// stops reading the archive.
const maxExtractErrors = 10

// Bounds of the names in an archive and of the work to check a symbolic
// link: a name or link target is at most maxNameLen bytes (PATH_MAX), an
// element at most maxElemLen (NAME_MAX); resolving a link follows at most
// maxLinkHops links and takes at most maxLinkSteps steps, and checking all
// the links of an archive at most maxTotalLinkSteps (real archives need a
// few steps per link; 400,000 links of 4096 steps would take minutes).
const (
	maxNameLen        = 4096
	maxElemLen        = 255
	maxLinkHops       = 255
	maxLinkSteps      = 4096
	maxTotalLinkSteps = 1 << 22
)

// entryError reports one archive entry that breaks an extraction rule.
type entryError struct {
	Archive string // archive name, as given to extractTar
	Entry   string // entry name, as stored in the archive
	Reason  string
}

func (e *entryError) Error() string {
	return fmt.Sprintf("%s: entry %q: %s", e.Archive, e.Entry, e.Reason)
}

func (e *entryError) Unwrap() error { return ErrUnsafeArchive }

// windowsRules says how extraction applies the rules on names that only
// Windows needs (see extractTar).
type windowsRules int

const (
	windowsIgnore windowsRules = iota // not checked
	windowsRefuse                     // a violation is an error
	windowsWarn                       // a violation is a warning (checkTar)
)

// hostWindowsRules is what an extraction on this system applies.
func hostWindowsRules() windowsRules {
	if runtime.GOOS == "windows" {
		return windowsRefuse
	}
	return windowsIgnore
}

// extractTar extracts the tar archive read from r into the directory dst of
// fsys, which must exist and should be empty. If r starts with the gzip magic
// bytes it is decompressed first. archive names the archive in errors.
//
// limit bounds both the bytes of the uncompressed tar stream and the bytes of
// file content written (hard links count once per copy, every entry's size
// is checked before it is written): an archive beyond it is refused as a
// decompression bomb. Pass the signed tar_size when it is known. limit must
// be positive.
//
// Every entry must follow these rules; a violation is an error wrapping
// [ErrUnsafeArchive] that names the archive and the entry, and extraction
// reports up to ten of them before it gives up (entries that break a rule are
// not written):
//
//   - A name is a relative slash-separated path of at most 4096 bytes, with
//     elements of at most 255 bytes: not empty, no NUL byte, no
//     backslash, not starting with "/" (absolute or UNC) or with a Windows
//     drive ("C:"), no empty, "." or ".." element. A single leading "./" is
//     removed (tufup's layout: a top entry "./" and members "./file"); plain
//     "file" members are accepted as well. A trailing "/" is allowed. On
//     Windows, elements must also be names Windows stores as given: none of
//     the characters <>:"|?* or control characters, no trailing dot or
//     space, no device name (CON, NUL, COM1...).
//   - The top entry ("./" or "."), if present, must be a directory; its mode
//     is given to dst.
//   - Names are unique, and no two names differ only in case (they would
//     collide on macOS and Windows). A directory created implicitly for a
//     member may still appear later as an explicit directory entry.
//   - Every parent of a member must be a directory of the archive (explicit
//     or implicit) spelled with the same case; nothing is written through a
//     symbolic link or below a file.
//   - Allowed types: directory, regular file, symbolic link, hard link. Device
//     files, FIFOs, contiguous and sparse files (GNU sparse entries and PAX
//     entries with GNU.sparse records, of every version: their data would
//     expand beyond what the tar holds) are refused. PAX global headers are
//     skipped.
//   - A symbolic link's target is relative (not empty, no NUL byte or
//     backslash, no leading "/" or drive), and resolved from the link's
//     directory, following the archive's other symbolic links (at most 255,
//     in at most 4096 steps), it stays inside the tree; targets are at most
//     4096 bytes. Dangling links inside the tree are allowed. The links are
//     created after every other entry, once all of them are checked, through
//     [afero.Linker]; a filesystem without symbolic links
//     (afero.MemMapFs), or Windows without the right to create them
//     (Developer Mode or administrator), fails on them with an error naming
//     the entry.
//   - A hard link must name an earlier regular file of the archive; it is
//     extracted as a copy of that file.
//   - At most 400,000 entries (maxArchiveEntries, implicit directories
//     included) and 8 MiB of names and link targets (maxManifestNames):
//     the manifest of the archive, kept until the install commits, stays
//     within the client's memory budget.
//
// Modes: files and directories get the header's permission bits (0o777);
// setuid, setgid and sticky bits are dropped. Modes are applied once all
// entries are written (directories deepest first), so read-only directories
// extract fine. Owners and modification times are not restored. Once all
// entries are written, every file is synced to disk (several at once).
//
// Files are created with O_EXCL and directories with Mkdir, which never
// follow a symbolic link; the installer's staged tree is a directory only
// its user can write to.
func extractTar(ctx context.Context, fsys afero.Fs, dst, archive string, r io.Reader, limit int64) (*tarManifest, error) {
	m, _, err := extract(ctx, fsys, dst, archive, r, limit, hostWindowsRules(), clientLimits)
	return m, err
}

// checkTar applies the rules of extractTar to the archive read from r
// without writing anything: it reads the archive once, keeping only its
// manifest (bounded as extractTar's, by lim: clientLimits but in tests).
// Names that only Windows refuses are returned as warnings, not errors.
// The repository checks with it what it publishes (add) and what it
// serves (verify).
func checkTar(ctx context.Context, archive string, r io.Reader, limit int64, lim archiveLimits) (*tarManifest, []string, error) {
	return extract(ctx, nil, "", archive, r, limit, windowsWarn, lim)
}

// extract is extractTar, or checkTar when fsys is nil.
func extract(ctx context.Context, fsys afero.Fs, dst, archive string, r io.Reader, limit int64, win windowsRules, lim archiveLimits) (*tarManifest, []string, error) {
	if limit <= 0 {
		return nil, nil, fmt.Errorf("%s: extraction limit must be positive, got %d", archive, limit)
	}
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", archive, err)
		}
		defer gz.Close()
		src = gz
	}
	capped := &capReader{r: src, limit: limit}
	x := &extractor{
		ctx:     ctx,
		fs:      fsys,
		dst:     dst,
		archive: archive,
		limit:   limit,
		win:     win,
		m:       newTarManifest(lim),
	}
	err := x.run(tar.NewReader(&ctxReader{ctx: ctx, r: capped}))
	if capped.exceeded {
		return nil, nil, fmt.Errorf("%s: uncompressed archive exceeds the limit of %d bytes: %w", archive, limit, ErrUnsafeArchive)
	}
	if err != nil {
		return nil, nil, err
	}
	return x.m, x.warnings, nil
}

type extractor struct {
	ctx      context.Context
	fs       afero.Fs // nil: check only, write nothing
	dst      string
	archive  string
	limit    int64
	win      windowsRules
	m        *tarManifest
	rootMode fs.FileMode
	hasRoot  bool
	steps    int // link resolution steps taken so far (maxTotalLinkSteps)
	bad      []error
	warnings []string
	buf      []byte // copy buffer, reused for every file
}

// writerOnly hides a file's ReadFrom, which would allocate a copy buffer
// per file, so io.CopyBuffer uses the extractor's.
type writerOnly struct{ io.Writer }

func (x *extractor) run(tr *tar.Reader) error {
	for len(x.bad) < maxExtractErrors {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: reading tar: %w", x.archive, err)
		}
		if err := x.entry(tr, hdr); err != nil {
			var ee *entryError
			if !errors.As(err, &ee) {
				return err // I/O failure or limit: stop now
			}
			x.bad = append(x.bad, err)
		}
	}
	if x.m.links > 0 {
		for i := int32(1); i < x.m.n; i++ {
			if x.m.ent(i).kind() != kindSymlink {
				continue
			}
			if err := x.checkLinkResolved(i); err != nil {
				var ee *entryError
				if !errors.As(err, &ee) {
					return err
				}
				x.bad = append(x.bad, err)
			}
		}
	}
	if len(x.bad) > 0 {
		return errors.Join(x.bad...)
	}
	if x.fs == nil {
		return nil
	}
	if err := x.makeLinks(); err != nil {
		return err
	}
	if err := x.syncFiles(); err != nil {
		return err
	}
	return x.applyModes()
}

// full returns the path on disk of entry i.
func (x *extractor) full(i int32) string {
	return filepath.Join(x.dst, filepath.FromSlash(x.m.path(i)))
}

// makeLinks creates the symbolic links, last, so that no link exists on
// disk before all of them are known to stay inside the tree (and, on
// Windows, a link to a directory is made once the directory exists).
func (x *extractor) makeLinks() error {
	if x.m.links == 0 {
		return nil
	}
	for i := int32(1); i < x.m.n; i++ {
		if x.m.ent(i).kind() != kindSymlink {
			continue
		}
		if err := x.ctx.Err(); err != nil {
			return err
		}
		linker, ok := x.fs.(afero.Linker)
		if !ok {
			return fmt.Errorf("%s: entry %q: symbolic link: %w", x.archive, x.m.path(i), afero.ErrNoSymlink)
		}
		if err := linker.SymlinkIfPossible(x.m.link(i), x.full(i)); err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, x.m.path(i), err)
		}
	}
	return nil
}

// syncWorkers is how many files are flushed to disk at once: filesystems
// batch concurrent syncs into one journal commit, so a tree of many small
// files syncs several times faster than one file after the other.
const syncWorkers = 32

// syncFiles flushes every extracted file to disk: on Linux with the OS file
// system one syncfs(2) for the whole file system, elsewhere each file.
func (x *extractor) syncFiles() error {
	if syncFilesystem(x.fs, x.dst) {
		return nil
	}
	return x.m.each(x.ctx, syncWorkers, kindReg, func(i int32, name string) error {
		f, err := x.fs.OpenFile(filepath.Join(x.dst, filepath.FromSlash(name)), os.O_WRONLY, 0)
		if err == nil {
			err = f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("%s: entry %q: sync: %w", x.archive, name, err)
		}
		return nil
	})
}

// syncDirs flushes the directory entries of the tree extracted at dst (the
// root and every directory of m) to disk, several at once.
func (m *tarManifest) syncDirs(ctx context.Context, fsys afero.Fs, dst string) {
	syncDir(fsys, dst)
	m.each(ctx, syncWorkers, kindDir, func(_ int32, name string) error {
		syncDir(fsys, filepath.Join(dst, filepath.FromSlash(name)))
		return nil
	})
}

// each calls fn with the index and name of every entry of the given kind
// (the root excluded) from up to n goroutines, and returns the first
// error; after an error or the end of ctx no new call starts. The
// goroutines take the entries by blocks, so walking a manifest of many
// entries of another kind costs little.
func (m *tarManifest) each(ctx context.Context, n int, kind int, fn func(i int32, name string) error) error {
	const block = 256
	var (
		next   atomic.Int32
		failed atomic.Bool
		mu     sync.Mutex
		first  error
		wg     sync.WaitGroup
	)
	next.Store(1)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		failed.Store(true)
	}
	for range n {
		wg.Go(func() {
			for !failed.Load() {
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				start := next.Add(block) - block
				if start >= m.n {
					return
				}
				for i := start; i < min(start+block, m.n) && !failed.Load(); i++ {
					if m.ent(i).kind() != kind {
						continue
					}
					if err := fn(i, m.path(i)); err != nil {
						fail(err)
					}
				}
			}
		})
	}
	wg.Wait()
	return first
}

func (x *extractor) bad1(entry, format string, args ...any) error {
	return &entryError{Archive: x.archive, Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// isSparse reports whether hdr is a sparse file: the old GNU type 'S', or a
// PAX entry with GNU.sparse records (formats 0.0, 0.1 and 1.0), which
// archive/tar reports as a regular file whose data expands to its
// GNU.sparse size.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.bad1(hdr.Name, "device files and FIFOs are not allowed")
	case tar.TypeGNUSparse:
		return x.bad1(hdr.Name, "sparse files are not allowed")
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return x.bad1(hdr.Name, "entry type %q is not allowed", hdr.Typeflag)
	}
	if isSparse(hdr) {
		return x.bad1(hdr.Name, "sparse files (GNU.sparse PAX records) are not allowed")
	}
	name, err := cleanEntryNameRules(hdr.Name, false)
	if err == nil && x.win != windowsIgnore {
		if werr := checkWindowsName(name); werr != nil {
			if x.win == windowsRefuse {
				err = werr
			} else if len(x.warnings) < maxExtractErrors {
				x.warnings = append(x.warnings, fmt.Sprintf("%s: entry %q: clients on Windows refuse it: %v", x.archive, hdr.Name, werr))
			}
		}
	}
	if err != nil {
		return x.bad1(hdr.Name, "%v", err)
	}
	mode := fs.FileMode(hdr.Mode) & fs.ModePerm
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return x.bad1(hdr.Name, "top entry is not a directory")
		}
		if x.hasRoot {
			return x.bad1(hdr.Name, "duplicate top entry")
		}
		x.hasRoot, x.rootMode = true, mode
		return nil
	}
	parent, elem, err := x.parents(hdr.Name, name)
	if err != nil {
		return err
	}
	if prev, ok := x.m.lookup(parent, elem); ok {
		pe := x.m.ent(prev)
		if x.m.elem(prev) != elem {
			return x.bad1(hdr.Name, "differs only in case from entry %q", x.m.path(prev))
		}
		if pe.implicit() && hdr.Typeflag == tar.TypeDir {
			pe.bits = pe.bits&^(flagImplicit|0o777) | uint16(mode)
			return nil
		}
		return x.bad1(hdr.Name, "duplicate entry")
	}
	var full string
	if x.fs != nil {
		full = filepath.Join(x.dst, filepath.FromSlash(name))
	}
	kind, size, link := kindDir, int64(0), ""
	switch hdr.Typeflag {
	case tar.TypeDir:
		if x.fs != nil {
			if err := x.fs.Mkdir(full, 0o700); err != nil {
				return fmt.Errorf("%s: entry %q: %w", x.archive, hdr.Name, err)
			}
		}
	case tar.TypeReg: // archive/tar reports the old TypeRegA as TypeReg
		if hdr.Size < 0 || hdr.Size > x.limit-x.m.size {
			return fmt.Errorf("%s: entry %q: %d bytes exceed the limit of %d bytes: %w", x.archive, hdr.Name, hdr.Size, x.limit, ErrUnsafeArchive)
		}
		if err := x.writeFile(full, hdr.Name, tr, hdr.Size); err != nil {
			return err
		}
		kind, size = kindReg, hdr.Size
	case tar.TypeLink:
		target, err := cleanEntryNameRules(hdr.Linkname, false)
		if err != nil || target == "" {
			return x.bad1(hdr.Name, "hard link target %q is not an entry name", hdr.Linkname)
		}
		t, ok := x.m.lookupPath(target)
		if !ok || x.m.ent(t).kind() != kindReg {
			return x.bad1(hdr.Name, "hard link target %q is not an earlier regular file of the archive", hdr.Linkname)
		}
		tsize := x.m.fileSize(t)
		if tsize > x.limit-x.m.size {
			return fmt.Errorf("%s: entry %q: copying %d bytes exceeds the limit of %d bytes: %w", x.archive, hdr.Name, tsize, x.limit, ErrUnsafeArchive)
		}
		var src io.Reader = zeroReader{}
		if x.fs != nil {
			f, err := x.fs.Open(filepath.Join(x.dst, filepath.FromSlash(target)))
			if err != nil {
				return fmt.Errorf("%s: entry %q: %w", x.archive, hdr.Name, err)
			}
			defer f.Close()
			src = f
		}
		if err := x.writeFile(full, hdr.Name, src, tsize); err != nil {
			return err
		}
		kind, size, mode = kindReg, tsize, x.m.ent(t).mode()
	case tar.TypeSymlink:
		if err := checkEntryLinkTarget(name, hdr.Linkname); err != nil {
			return x.bad1(hdr.Name, "%v", err)
		}
		if x.fs != nil {
			if _, ok := x.fs.(afero.Linker); !ok {
				return fmt.Errorf("%s: entry %q: symbolic link: %w", x.archive, hdr.Name, afero.ErrNoSymlink)
			}
		}
		kind, link = kindSymlink, hdr.Linkname // created by makeLinks once every link is checked
	}
	if _, err := x.m.add(parent, elem, kind, mode, size, link, false); err != nil {
		return fmt.Errorf("%s: entry %q: %w", x.archive, hdr.Name, err)
	}
	return nil
}

// zeroReader stands for a hard link's source when checking only.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// parents checks the parents of name, creates the missing ones, and
// returns the index of name's parent and name's last element.
func (x *extractor) parents(raw, name string) (int32, string, error) {
	cur := int32(0)
	for i := 0; ; {
		j := strings.IndexByte(name[i:], '/')
		if j < 0 {
			return cur, name[i:], nil
		}
		el := name[i : i+j]
		p := name[:i+j]
		i += j + 1
		if e, ok := x.m.lookup(cur, el); ok {
			if x.m.elem(e) != el {
				return 0, "", x.bad1(raw, "parent %q differs only in case from entry %q", p, x.m.path(e))
			}
			if x.m.ent(e).kind() != kindDir {
				return 0, "", x.bad1(raw, "parent %q is not a directory", p)
			}
			cur = e
			continue
		}
		if x.fs != nil {
			if err := x.fs.Mkdir(filepath.Join(x.dst, filepath.FromSlash(p)), 0o700); err != nil {
				return 0, "", fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
			}
		}
		e, err := x.m.add(cur, el, kindDir, 0o755, 0, "", true)
		if err != nil {
			return 0, "", fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
		}
		cur = e
	}
}

// writeFile creates full (which must not exist) with exactly size bytes of
// r; when checking only, it reads them.
func (x *extractor) writeFile(full, raw string, r io.Reader, size int64) error {
	if x.buf == nil {
		x.buf = make([]byte, 64<<10)
	}
	var w io.Writer = io.Discard
	var f afero.File
	if x.fs != nil {
		var err error
		f, err = x.fs.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
		}
		w = writerOnly{f}
	}
	n, err := io.CopyBuffer(w, io.LimitReader(r, size), x.buf)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	x.m.size += n
	if err != nil {
		return fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
	}
	return nil
}

// checkLinkResolved follows the target of the symbolic link i through the
// archive's symbolic links and checks that every step stays inside the tree.
func (x *extractor) checkLinkResolved(i int32) error {
	name, link := x.m.path(i), x.m.link(i)
	// dirs is the resolved path: an entry index per element (-1 past the
	// archive's entries: a dangling link) and the path's length so far.
	type step struct {
		entry int32
		plen  int
	}
	var dirs []step
	var chain []int32
	for p := x.m.ent(i).parent; p > 0; p = x.m.ent(p).parent {
		chain = append(chain, p)
	}
	for k := len(chain) - 1; k >= 0; k-- {
		plen := len(x.m.elem(chain[k]))
		if n := len(dirs); n > 0 {
			plen += dirs[n-1].plen + 1
		}
		dirs = append(dirs, step{chain[k], plen})
	}
	// Components still to resolve: the last slice is consumed first.
	pending := [][]string{strings.Split(link, "/")}
	hops, steps := 0, 0
	for len(pending) > 0 {
		top := pending[len(pending)-1]
		if len(top) == 0 {
			pending = pending[:len(pending)-1]
			continue
		}
		c := top[0]
		pending[len(pending)-1] = top[1:]
		if steps++; steps > maxLinkSteps {
			return x.bad1(name, "symbolic link target %q: resolution takes more than %d steps", link, maxLinkSteps)
		}
		if x.steps++; x.steps > maxTotalLinkSteps {
			return fmt.Errorf("%s: checking its symbolic links takes more than %d steps: %w", x.archive, maxTotalLinkSteps, ErrUnsafeArchive)
		}
		switch c {
		case "", ".":
			continue
		case "..":
			if len(dirs) == 0 {
				return x.bad1(name, "symbolic link target %q escapes the tree", link)
			}
			dirs = dirs[:len(dirs)-1]
			continue
		}
		parent, plen := int32(0), len(c)
		if n := len(dirs); n > 0 {
			parent, plen = dirs[n-1].entry, dirs[n-1].plen+1+len(c)
		}
		if plen > maxNameLen {
			return x.bad1(name, "symbolic link target %q resolves to a path longer than %d bytes", link, maxNameLen)
		}
		l, ok := x.m.lookup(parent, c)
		if ok && x.m.ent(l).kind() == kindSymlink {
			if hops++; hops > maxLinkHops {
				return x.bad1(name, "symbolic link target %q: too many levels of symbolic links", link)
			}
			pending = append(pending, strings.Split(x.m.link(l), "/"))
			continue
		}
		if !ok {
			l = -1
		}
		dirs = append(dirs, step{l, plen})
	}
	return nil
}

// applyModes sets the recorded permission bits: files first, then
// directories deepest first (an entry's descendants come after it in the
// manifest, so in reverse order), then the root.
func (x *extractor) applyModes() error {
	for i := int32(1); i < x.m.n; i++ {
		if e := x.m.ent(i); e.kind() == kindReg {
			if err := x.fs.Chmod(x.full(i), e.mode()); err != nil {
				return fmt.Errorf("%s: entry %q: %w", x.archive, x.m.path(i), err)
			}
		}
	}
	for i := x.m.n - 1; i > 0; i-- {
		if e := x.m.ent(i); e.kind() == kindDir {
			if err := x.fs.Chmod(x.full(i), e.mode()); err != nil {
				return fmt.Errorf("%s: entry %q: %w", x.archive, x.m.path(i), err)
			}
		}
	}
	if x.hasRoot {
		if err := x.fs.Chmod(x.dst, x.rootMode); err != nil {
			return fmt.Errorf("%s: top entry: %w", x.archive, err)
		}
	}
	return nil
}

// cleanEntryName checks a tar entry name with the rules of this system and
// returns it without its leading "./" and trailing "/"; the top entry ("./"
// or ".") gives "".
func cleanEntryName(raw string) (string, error) {
	return cleanEntryNameRules(raw, runtime.GOOS == "windows")
}

// cleanEntryNameRules is cleanEntryName, with Windows's rules on names when
// windows is set.
func cleanEntryNameRules(raw string, windows bool) (string, error) {
	if err := checkPathChars(raw); err != nil {
		return "", err
	}
	if len(raw) > maxNameLen {
		return "", fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	if raw == "." || raw == "./" {
		return "", nil
	}
	s := strings.TrimPrefix(raw, "./")
	s = strings.TrimSuffix(s, "/")
	for rest := s; ; {
		el, after, more := strings.Cut(rest, "/")
		switch el {
		case "":
			return "", errors.New("empty path element")
		case ".", "..":
			return "", fmt.Errorf("path element %q is not allowed", el)
		}
		if len(el) > maxElemLen {
			return "", fmt.Errorf("path element %.40q... longer than %d bytes", el, maxElemLen)
		}
		if windows {
			if err := checkWindowsElement(el); err != nil {
				return "", err
			}
		}
		if !more {
			break
		}
		rest = after
	}
	return s, nil
}

// checkWindowsName applies checkWindowsElement to every element of a
// cleaned name.
func checkWindowsName(s string) error {
	for _, el := range strings.Split(s, "/") {
		if err := checkWindowsElement(el); err != nil {
			return err
		}
	}
	return nil
}

// checkWindowsElement refuses a path element that Windows would not store
// under that name: reserved characters (':' names an alternate data stream),
// a trailing dot or space (dropped), or a device name such as NUL or COM1.
func checkWindowsElement(el string) error {
	for _, r := range el {
		if r < 0x20 || strings.ContainsRune(`<>:"|?*`, r) {
			return fmt.Errorf("path element %q: character %q is not allowed on Windows", el, r)
		}
	}
	if strings.HasSuffix(el, ".") || strings.HasSuffix(el, " ") {
		return fmt.Errorf("path element %q ends with a dot or a space, which Windows drops", el)
	}
	stem, _, _ := strings.Cut(el, ".")
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return fmt.Errorf("path element %q is a Windows device name", el)
	}
	if len(stem) == 4 && (strings.HasPrefix(stem, "COM") || strings.HasPrefix(stem, "LPT")) && '0' <= stem[3] && stem[3] <= '9' {
		return fmt.Errorf("path element %q is a Windows device name", el)
	}
	return nil
}

// checkPathChars refuses empty, absolute, drive-relative and backslash paths.
func checkPathChars(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.ContainsRune(p, 0):
		return errors.New("NUL byte in path")
	case strings.ContainsRune(p, '\\'):
		return errors.New("backslash in path")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	case len(p) >= 2 && p[1] == ':' && ('a' <= p[0]|0x20 && p[0]|0x20 <= 'z'):
		return errors.New("windows drive path")
	}
	return nil
}

// checkEntryLinkTarget checks the target of the symbolic link name lexically.
func checkEntryLinkTarget(name, target string) error {
	if err := checkPathChars(target); err != nil {
		return fmt.Errorf("symbolic link target %q: %v", target, err)
	}
	if len(target) > maxNameLen {
		return fmt.Errorf("symbolic link target longer than %d bytes", maxNameLen)
	}
	if t := path.Join(path.Dir(name), target); t == ".." || strings.HasPrefix(t, "../") {
		return fmt.Errorf("symbolic link target %q escapes the tree", target)
	}
	return nil
}

// verifyTree checks that the tree at dir holds exactly the entries of m, with
// their types, sizes and link targets. It reads the directories in
// batches, so its memory does not grow with a directory's size.
func verifyTree(fsys afero.Fs, dir string, m *tarManifest) error {
	fi, err := lstat(fsys, dir)
	if err != nil {
		return fmt.Errorf("verifying extracted tree: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("verifying extracted tree: %s: not a directory", dir)
	}
	seen := 0
	if err := verifyDir(fsys, dir, m, 0, &seen); err != nil {
		return fmt.Errorf("verifying extracted tree: %w", err)
	}
	if seen != m.count() {
		return fmt.Errorf("verifying extracted tree: %s: %d entries, want %d", dir, seen, m.count())
	}
	return nil
}

// verifyDir checks the directory p, entry idx of m, and below it.
func verifyDir(fsys afero.Fs, p string, m *tarManifest, idx int32, seen *int) error {
	f, err := fsys.Open(p)
	if err != nil {
		return err
	}
	var subdirs []int32 // checked once this directory is closed
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := verifyEntry(fsys, p, m, idx, n, &subdirs); err != nil {
				f.Close()
				return err
			}
			*seen++
		}
		if rerr == io.EOF || (rerr == nil && len(names) == 0) {
			break
		}
		if rerr != nil {
			f.Close()
			return fmt.Errorf("%s: %w", p, rerr)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, s := range subdirs {
		if err := verifyDir(fsys, filepath.Join(p, m.elem(s)), m, s, seen); err != nil {
			return err
		}
	}
	return nil
}

// verifyEntry checks the entry n found in the directory p (entry idx).
func verifyEntry(fsys afero.Fs, p string, m *tarManifest, idx int32, n string, subdirs *[]int32) error {
	full := filepath.Join(p, n)
	i, ok := m.lookup(idx, n)
	if !ok || m.elem(i) != n {
		return fmt.Errorf("%s: unexpected entry %q", p, n)
	}
	fi, err := lstat(fsys, full)
	if err != nil {
		return err
	}
	e := m.ent(i)
	switch e.kind() {
	case kindDir:
		if !fi.IsDir() {
			return fmt.Errorf("%q is not a directory", full)
		}
		*subdirs = append(*subdirs, i)
	case kindReg:
		if size := m.fileSize(i); !fi.Mode().IsRegular() || fi.Size() != size {
			return fmt.Errorf("%q is not a regular file of %d bytes", full, size)
		}
	case kindSymlink:
		lr, ok := fsys.(afero.LinkReader)
		if fi.Mode()&fs.ModeSymlink == 0 || !ok {
			return fmt.Errorf("%q is not a symbolic link", full)
		}
		link := m.link(i)
		if t, err := lr.ReadlinkIfPossible(full); err != nil || filepath.ToSlash(t) != link { // Windows stores \ separators
			return fmt.Errorf("symbolic link %q does not point to %q", full, link)
		}
	}
	return nil
}

// capReader fails once more than limit bytes have been read.
type capReader struct {
	r        io.Reader
	limit, n int64
	exceeded bool
}

var errOverLimit = errors.New("data exceeds the limit")

func (c *capReader) Read(p []byte) (int, error) {
	if c.exceeded {
		return 0, errOverLimit
	}
	if max := c.limit - c.n + 1; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.exceeded = true
		return 0, errOverLimit
	}
	return n, err
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
