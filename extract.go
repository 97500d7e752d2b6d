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
	"sort"
	"strings"
	"sync"

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
// maxLinkHops links and takes at most maxLinkSteps steps.
const (
	maxNameLen   = 4096
	maxElemLen   = 255
	maxLinkHops  = 255
	maxLinkSteps = 4096
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

// manifestEntry is one member of an extracted archive, as recorded in its manifest.
type manifestEntry struct {
	name     string      // cleaned slash-separated name relative to the tree root; "" is the root
	kind     byte        // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode     fs.FileMode // permission bits (0o777) from the header
	size     int64       // regular files: content length
	link     string      // symbolic links: target as stored
	implicit bool        // directory created for a member, absent from the archive
}

// tarManifest lists what extractTar wrote, in archive order.
type tarManifest struct {
	entries []*manifestEntry
	byKey   map[string]*manifestEntry // key: strings.ToLower(name)
	byName  map[string]*manifestEntry
	size    int64 // bytes of file content written
}

// extractTar extracts the tar archive read from r into the directory dst of
// fsys, which must exist and should be empty. If r starts with the gzip magic
// bytes it is decompressed first. archive names the archive in errors.
//
// limit bounds both the bytes of the uncompressed tar stream and the bytes of
// file content written (hard links count once per copy): an archive beyond it
// is refused as a decompression bomb. Pass the signed tar_size when it is
// known. limit must be positive.
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
//     files, FIFOs, contiguous and sparse files are refused. PAX global
//     headers are skipped.
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
//
// Modes: files and directories get the header's permission bits (0o777);
// setuid, setgid and sticky bits are dropped. Modes are applied once all
// entries are written (directories deepest first), so read-only directories
// extract fine. Owners and modification times are not restored. Once all
// entries are written, every file is synced to disk (several at once).
func extractTar(ctx context.Context, fsys afero.Fs, dst, archive string, r io.Reader, limit int64) (*tarManifest, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%s: extraction limit must be positive, got %d", archive, limit)
	}
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
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
		m:       &tarManifest{byKey: make(map[string]*manifestEntry), byName: make(map[string]*manifestEntry)},
	}
	err := x.run(tar.NewReader(&ctxReader{ctx: ctx, r: capped}))
	if capped.exceeded {
		return nil, fmt.Errorf("%s: uncompressed archive exceeds the limit of %d bytes: %w", archive, limit, ErrUnsafeArchive)
	}
	if err != nil {
		return nil, err
	}
	return x.m, nil
}

type extractor struct {
	ctx      context.Context
	fs       afero.Fs
	dst      string
	archive  string
	limit    int64
	m        *tarManifest
	rootMode fs.FileMode
	hasRoot  bool
	bad      []error
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
	for _, e := range x.m.entries {
		if e.kind != tar.TypeSymlink {
			continue
		}
		if err := x.checkLinkResolved(e); err != nil {
			x.bad = append(x.bad, err)
		}
	}
	if len(x.bad) > 0 {
		return errors.Join(x.bad...)
	}
	if err := x.makeLinks(); err != nil {
		return err
	}
	if err := x.syncFiles(); err != nil {
		return err
	}
	return x.applyModes()
}

// makeLinks creates the symbolic links, last, so that no link exists on
// disk before all of them are known to stay inside the tree (and, on
// Windows, a link to a directory is made once the directory exists).
func (x *extractor) makeLinks() error {
	for _, e := range x.m.entries {
		if e.kind != tar.TypeSymlink {
			continue
		}
		if err := x.ctx.Err(); err != nil {
			return err
		}
		linker, ok := x.fs.(afero.Linker)
		if !ok {
			return fmt.Errorf("%s: entry %q: symbolic link: %w", x.archive, e.name, afero.ErrNoSymlink)
		}
		if err := linker.SymlinkIfPossible(e.link, filepath.Join(x.dst, filepath.FromSlash(e.name))); err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, e.name, err)
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
	var names []string
	for _, e := range x.m.entries {
		if e.kind == tar.TypeReg {
			names = append(names, e.name)
		}
	}
	return parallel(x.ctx, syncWorkers, names, func(name string) error {
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

// parallel calls fn for every item from up to n goroutines and returns the
// first error; after an error or the end of ctx no new call starts.
func parallel(ctx context.Context, n int, items []string, fn func(string) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	take := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = ctx.Err()
		}
		if first != nil || next == len(items) {
			return "", false
		}
		next++
		return items[next-1], true
	}
	for range min(n, len(items)) {
		wg.Go(func() {
			for {
				it, ok := take()
				if !ok {
					return
				}
				if err := fn(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
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

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.bad1(hdr.Name, "device files and FIFOs are not allowed")
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return x.bad1(hdr.Name, "entry type %q is not allowed", hdr.Typeflag)
	}
	name, err := cleanEntryName(hdr.Name)
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
	key := strings.ToLower(name)
	if prev, ok := x.m.byKey[key]; ok {
		if prev.implicit && hdr.Typeflag == tar.TypeDir && prev.name == name {
			prev.implicit, prev.mode = false, mode
			return nil
		}
		if prev.name != name {
			return x.bad1(hdr.Name, "differs only in case from entry %q", prev.name)
		}
		return x.bad1(hdr.Name, "duplicate entry")
	}
	if err := x.parents(hdr.Name, name); err != nil {
		return err
	}
	full := filepath.Join(x.dst, filepath.FromSlash(name))
	e := &manifestEntry{name: name, kind: hdr.Typeflag, mode: mode}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.fs.Mkdir(full, 0o700); err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, hdr.Name, err)
		}
	case tar.TypeReg: // archive/tar reports the old TypeRegA as TypeReg
		if hdr.Size < 0 || hdr.Size > x.limit-x.m.size {
			return fmt.Errorf("%s: entry %q: %d bytes exceed the limit of %d bytes: %w", x.archive, hdr.Name, hdr.Size, x.limit, ErrUnsafeArchive)
		}
		if err := x.writeFile(full, hdr.Name, tr, hdr.Size); err != nil {
			return err
		}
		e.size = hdr.Size
	case tar.TypeLink:
		target, err := cleanEntryName(hdr.Linkname)
		if err != nil || target == "" {
			return x.bad1(hdr.Name, "hard link target %q is not an entry name", hdr.Linkname)
		}
		t, ok := x.m.byKey[strings.ToLower(target)]
		if !ok || t.name != target || t.kind != tar.TypeReg {
			return x.bad1(hdr.Name, "hard link target %q is not an earlier regular file of the archive", hdr.Linkname)
		}
		if t.size > x.limit-x.m.size {
			return fmt.Errorf("%s: entry %q: copying %d bytes exceeds the limit of %d bytes: %w", x.archive, hdr.Name, t.size, x.limit, ErrUnsafeArchive)
		}
		src, err := x.fs.Open(filepath.Join(x.dst, filepath.FromSlash(target)))
		if err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, hdr.Name, err)
		}
		err = x.writeFile(full, hdr.Name, src, t.size)
		src.Close()
		if err != nil {
			return err
		}
		e.kind, e.size, e.mode = tar.TypeReg, t.size, t.mode
	case tar.TypeSymlink:
		if err := checkEntryLinkTarget(name, hdr.Linkname); err != nil {
			return x.bad1(hdr.Name, "%v", err)
		}
		if _, ok := x.fs.(afero.Linker); !ok {
			return fmt.Errorf("%s: entry %q: symbolic link: %w", x.archive, hdr.Name, afero.ErrNoSymlink)
		}
		e.link = hdr.Linkname // created by makeLinks once every link is checked
	}
	x.add(e)
	return nil
}

func (x *extractor) add(e *manifestEntry) {
	x.m.entries = append(x.m.entries, e)
	x.m.byKey[strings.ToLower(e.name)] = e
	x.m.byName[e.name] = e
}

// parents checks the parents of name and creates the missing ones.
func (x *extractor) parents(raw, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		e, ok := x.m.byName[p]
		if !ok {
			e, ok = x.m.byKey[strings.ToLower(p)]
		}
		if ok {
			if e.name != p {
				return x.bad1(raw, "parent %q differs only in case from entry %q", p, e.name)
			}
			if e.kind != tar.TypeDir {
				return x.bad1(raw, "parent %q is not a directory", p)
			}
			continue
		}
		if err := x.fs.Mkdir(filepath.Join(x.dst, filepath.FromSlash(p)), 0o700); err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
		}
		x.add(&manifestEntry{name: p, kind: tar.TypeDir, mode: 0o755, implicit: true})
	}
	return nil
}

// writeFile creates full (which must not exist) with exactly size bytes of r.
func (x *extractor) writeFile(full, raw string, r io.Reader, size int64) error {
	f, err := x.fs.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
	}
	if x.buf == nil {
		x.buf = make([]byte, 64<<10)
	}
	n, err := io.CopyBuffer(writerOnly{f}, io.LimitReader(r, size), x.buf)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	x.m.size += n
	if err != nil {
		return fmt.Errorf("%s: entry %q: %w", x.archive, raw, err)
	}
	return nil
}

// checkLinkResolved follows e's target through the archive's symbolic links
// and checks that every step stays inside the tree.
func (x *extractor) checkLinkResolved(e *manifestEntry) error {
	// dirs[i] is the resolved path at depth i+1.
	var dirs []string
	if i := strings.LastIndexByte(e.name, '/'); i >= 0 {
		for j := 0; j < i; j++ {
			if e.name[j] == '/' {
				dirs = append(dirs, e.name[:j])
			}
		}
		dirs = append(dirs, e.name[:i])
	}
	// Components still to resolve: the last slice is consumed first.
	pending := [][]string{strings.Split(e.link, "/")}
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
			return x.bad1(e.name, "symbolic link target %q: resolution takes more than %d steps", e.link, maxLinkSteps)
		}
		switch c {
		case "", ".":
			continue
		case "..":
			if len(dirs) == 0 {
				return x.bad1(e.name, "symbolic link target %q escapes the tree", e.link)
			}
			dirs = dirs[:len(dirs)-1]
			continue
		}
		p := c
		if n := len(dirs); n > 0 {
			p = dirs[n-1] + "/" + c
		}
		if len(p) > maxNameLen {
			return x.bad1(e.name, "symbolic link target %q resolves to a path longer than %d bytes", e.link, maxNameLen)
		}
		l, ok := x.m.byName[p]
		if !ok {
			l, ok = x.m.byKey[strings.ToLower(p)]
		}
		if ok && l.kind == tar.TypeSymlink {
			if hops++; hops > maxLinkHops {
				return x.bad1(e.name, "symbolic link target %q: too many levels of symbolic links", e.link)
			}
			pending = append(pending, strings.Split(l.link, "/"))
			continue
		}
		dirs = append(dirs, p)
	}
	return nil
}

// applyModes sets the recorded permission bits: files first, then
// directories deepest first, then the root.
func (x *extractor) applyModes() error {
	var dirs []*manifestEntry
	for _, e := range x.m.entries {
		switch e.kind {
		case tar.TypeReg:
			if err := x.fs.Chmod(filepath.Join(x.dst, filepath.FromSlash(e.name)), e.mode); err != nil {
				return fmt.Errorf("%s: entry %q: %w", x.archive, e.name, err)
			}
		case tar.TypeDir:
			dirs = append(dirs, e)
		}
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].name, "/") > strings.Count(dirs[j].name, "/")
	})
	for _, e := range dirs {
		if err := x.fs.Chmod(filepath.Join(x.dst, filepath.FromSlash(e.name)), e.mode); err != nil {
			return fmt.Errorf("%s: entry %q: %w", x.archive, e.name, err)
		}
	}
	if x.hasRoot {
		if err := x.fs.Chmod(x.dst, x.rootMode); err != nil {
			return fmt.Errorf("%s: top entry: %w", x.archive, err)
		}
	}
	return nil
}

// cleanEntryName checks a tar entry name and returns it without its leading
// "./" and trailing "/"; the top entry ("./" or ".") gives "".
func cleanEntryName(raw string) (string, error) {
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
	for _, el := range strings.Split(s, "/") {
		switch el {
		case "":
			return "", errors.New("empty path element")
		case ".", "..":
			return "", fmt.Errorf("path element %q is not allowed", el)
		}
		if len(el) > maxElemLen {
			return "", fmt.Errorf("path element %.40q... longer than %d bytes", el, maxElemLen)
		}
		if runtime.GOOS == "windows" {
			if err := checkWindowsElement(el); err != nil {
				return "", err
			}
		}
	}
	return s, nil
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
// their types, sizes and link targets.
func verifyTree(fsys afero.Fs, dir string, m *tarManifest) error {
	seen := 0
	err := afero.Walk(fsys, dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			if !fi.IsDir() {
				return fmt.Errorf("%s: not a directory", dir)
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		e, ok := m.byKey[strings.ToLower(name)]
		if !ok || e.name != name {
			return fmt.Errorf("%s: unexpected entry %q", dir, name)
		}
		seen++
		switch e.kind {
		case tar.TypeDir:
			if !fi.IsDir() {
				return fmt.Errorf("%s: %q is not a directory", dir, name)
			}
		case tar.TypeReg:
			if !fi.Mode().IsRegular() || fi.Size() != e.size {
				return fmt.Errorf("%s: %q is not a regular file of %d bytes", dir, name, e.size)
			}
		case tar.TypeSymlink:
			lr, ok := fsys.(afero.LinkReader)
			if fi.Mode()&fs.ModeSymlink == 0 || !ok {
				return fmt.Errorf("%s: %q is not a symbolic link", dir, name)
			}
			if t, err := lr.ReadlinkIfPossible(p); err != nil || filepath.ToSlash(t) != e.link { // Windows stores \ separators
				return fmt.Errorf("%s: symbolic link %q does not point to %q", dir, name, e.link)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verifying extracted tree: %w", err)
	}
	if seen != len(m.entries) {
		return fmt.Errorf("verifying extracted tree: %s: %d entries, want %d", dir, seen, len(m.entries))
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
