package notsotuf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/afero"
)

// Keeping what no release shipped. An update replaces the install
// directory with a new tree; the files and directories the application or
// its user put into it (a config file, logs, plugins) were not shipped by
// the installed release and must not go away with the previous tree. The
// install manifest beside the tree lists what the installed release
// shipped: every other entry is carried into the staged tree before the
// swap, with the same bytes, modes, modification times and (Linux, macOS)
// extended attributes, and, when the updater runs as root, owners.
//
//   - A regular file is hard-linked into the staged tree where the file
//     system allows it (the same inode: nothing is copied, and the previous
//     tree stays complete until the swap commits), else copied and synced.
//   - A directory that no release shipped is created and filled the same
//     way; a directory the new release ships too is merged: the user's
//     entries go inside it.
//   - A symbolic link is recreated with the same target.
//   - A named pipe, socket or device is not carried (logged).
//   - When the new release ships a path that the user's entry occupies
//     (as a file, or as a file where the user has a directory), the
//     release wins and the user's entry is kept beside it as
//     NAME.notsotuf-user (logged as a warning).
//   - A directory the installed release shipped but the new one does not
//     is recreated in the new tree to hold the user's entries inside it.
//
// Without an install manifest nothing is known to be the user's and
// nothing is carried: the install directory check writes a manifest for a
// tree it proves to be the installed release (see checkInstalledTree), so
// only a tree replaced with Adopt, or an empty one, has none. With purge
// nothing is carried either.

// userSuffix names the user's copy of a path the new release now ships.
const userSuffix = ".notsotuf-user"

// Entry kinds of a shippedSet.
const (
	shippedDir = iota
	shippedFile
	shippedLink
)

// shippedEntry is one entry a release shipped, from its install manifest.
type shippedEntry struct {
	kind int8
	size int64
	link string
}

// shippedSet is what a release shipped, by slash-separated path relative
// to the tree.
type shippedSet map[string]shippedEntry

// loadShipped reads the install manifest at mpath. It returns nil (and no
// error) when there is none or it is another app's.
func loadShipped(fsys afero.Fs, mpath, app string) (shippedSet, error) {
	s := shippedSet{}
	h, err := readManifest(fsys, mpath, func(_ manifestHeader, e installedEntry) error {
		se := shippedEntry{size: e.Size, link: e.Link}
		switch e.Type {
		case "dir":
			se.kind = shippedDir
		case "file":
			se.kind = shippedFile
		default:
			se.kind = shippedLink
		}
		s[e.Path] = se
		return nil
	})
	if errors.Is(err, errNoManifest) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if h.App != app {
		return nil, nil
	}
	return s, nil
}

// keep returns the filter of the tree's entries the release shipped, for
// writeTarFilter (nil when s is: the whole tree).
func (s shippedSet) keep() func(rel string) bool {
	if s == nil {
		return nil
	}
	return func(rel string) bool { _, ok := s[rel]; return ok }
}

// carryInto carries the user's entries of the install directory into the
// tree dst, whose install manifest is mdst (see the rules above).
// reset first removes from dst what its manifest does not list (what an
// interrupted earlier carry left) and checks that it holds every entry of
// its manifest with the same type, size and link target (a recorded
// staged tree, or a previous tree, that waited on the disk).
func (in *installer) carryInto(dst, mdst string, reset bool) error {
	if in.app == "" {
		return nil
	}
	neu, err := loadShipped(in.fs, mdst, in.app)
	if err != nil {
		return err
	}
	if reset && neu != nil {
		// A staged tree must still be what was staged; a previous tree
		// (a rollback) was the live one, whose files the user may have
		// changed.
		strict := dst != in.previousPath()
		if err := in.resetTree(dst, neu, strict); err != nil {
			return err
		}
	}
	if in.purge || neu == nil {
		return nil
	}
	old, err := loadShipped(in.fs, in.manifestPath(), in.app)
	if err != nil {
		return err
	}
	if old == nil {
		in.logger().Info("no install manifest: the install directory is replaced as a whole", "dir", in.dir)
		return nil
	}
	if ok, err := exists(in.fs, in.dir); err != nil || !ok {
		return err
	}
	c := &carrier{in: in, fsys: in.fs, from: in.dir, to: dst, old: old, neu: neu,
		restore: map[string]fs.FileMode{}, touched: map[string]bool{}, aside: map[string]string{}}
	err = c.walkShipped("")
	if rerr := c.restoreModes(); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("keeping the files the release did not ship (set ClientConfig.Purge, --purge, to drop them): %w", err)
	}
	if c.n > 0 {
		if !syncFilesystem(in.fs, dst) {
			for d := range c.touched {
				syncDir(in.fs, d)
			}
		}
		in.logger().Info("kept the files the release did not ship", "dir", in.dir, "entries", c.n)
	}
	return nil
}

// resetTree removes from the tree at dir every entry that s does not list;
// strict, it fails unless the tree holds every entry of s with its type
// (files: size; links: target).
func (in *installer) resetTree(dir string, s shippedSet, strict bool) error {
	seen := 0
	restore := map[string]fs.FileMode{}
	var walk func(rel string) error
	walk = func(rel string) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		names, err := readDirNames(in.fs, p)
		if err != nil {
			return err
		}
		for _, name := range names {
			r := path.Join(rel, name)
			q := filepath.Join(p, name)
			fi, err := lstat(in.fs, q)
			if err != nil {
				return err
			}
			e, ok := s[r]
			if !ok {
				if err := makeWritable(in.fs, p, restore); err != nil {
					return err
				}
				if err := in.removeTree(q); err != nil {
					return err
				}
				continue
			}
			seen++
			changed := fmt.Errorf("%s changed since it was staged: %q is not what its manifest says", dir, r)
			if !strict {
				if e.kind == shippedDir && fi.IsDir() {
					if err := walk(r); err != nil {
						return err
					}
				}
				continue
			}
			switch e.kind {
			case shippedDir:
				if !fi.IsDir() {
					return changed
				}
				if err := walk(r); err != nil {
					return err
				}
			case shippedFile:
				if !fi.Mode().IsRegular() || fi.Size() != e.size {
					return changed
				}
			case shippedLink:
				if fi.Mode()&fs.ModeSymlink == 0 {
					return changed
				}
				if t, err := readlink(in.fs, q); err != nil || filepath.ToSlash(t) != e.link {
					return changed
				}
			}
		}
		return nil
	}
	err := walk("")
	for d, m := range restore {
		if cerr := in.fs.Chmod(d, m); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if strict && seen != len(s) {
		return fmt.Errorf("%s changed since it was staged: %d entries of its manifest are missing", dir, len(s)-seen)
	}
	return nil
}

// makeWritable gives the owner write access to the directory d if it has
// none (a read-only directory of a release), remembering its mode in
// restore.
func makeWritable(fsys afero.Fs, d string, restore map[string]fs.FileMode) error {
	if _, done := restore[d]; done {
		return nil
	}
	fi, err := lstat(fsys, d)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o300 == 0o300 {
		return nil
	}
	mode := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if err := fsys.Chmod(d, mode|0o700); err != nil {
		return err
	}
	restore[d] = mode
	return nil
}

// carrier carries the user's entries of one tree into another.
type carrier struct {
	in       *installer
	fsys     afero.Fs
	from, to string
	old, neu shippedSet
	restore  map[string]fs.FileMode // directories of to made writable for the carry
	touched  map[string]bool        // directories of to that received entries
	aside    map[string]string      // path the new release ships -> where the user's entry went
	n        int
}

func (c *carrier) restoreModes() error {
	var first error
	for d, m := range c.restore {
		if err := c.fsys.Chmod(d, m); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *carrier) src(rel string) string { return filepath.Join(c.from, filepath.FromSlash(rel)) }
func (c *carrier) dst(rel string) string { return filepath.Join(c.to, filepath.FromSlash(rel)) }

// walkShipped looks for the user's entries in rel, a directory the
// installed release shipped ("" is the tree).
func (c *carrier) walkShipped(rel string) error {
	names, err := readDirNames(c.fsys, c.src(rel))
	if err != nil {
		return err
	}
	for _, name := range names {
		r := path.Join(rel, name)
		fi, err := lstat(c.fsys, c.src(r))
		if err != nil {
			return err
		}
		if e, ok := c.old[r]; ok {
			if e.kind == shippedDir && fi.IsDir() {
				if err := c.walkShipped(r); err != nil {
					return err
				}
			}
			continue // the release's: replaced by the new one, or gone
		}
		if err := c.carry(r, fi); err != nil {
			return err
		}
	}
	return nil
}

// carry brings the user's entry r into the new tree.
func (c *carrier) carry(r string, fi fs.FileInfo) error {
	dst, merge, err := c.dest(r, fi.IsDir())
	if err != nil {
		return err
	}
	if merge {
		// The new release has this directory too: the user's entries go
		// inside it.
		names, err := readDirNames(c.fsys, c.src(r))
		if err != nil {
			return err
		}
		for _, name := range names {
			cr := path.Join(r, name)
			cfi, err := lstat(c.fsys, c.src(cr))
			if err != nil {
				return err
			}
			if err := c.carry(cr, cfi); err != nil {
				return err
			}
		}
		return nil
	}
	if dst != r {
		c.in.logger().Warn("the new release ships a file where the user has one: the release's is installed, the user's kept beside it",
			"path", r, "kept as", dst)
	}
	if err := c.parents(r, dst); err != nil {
		return err
	}
	return c.copyEntry(c.src(r), c.dst(dst), fi)
}

// dest returns where the user's entry r goes in the new tree: r itself,
// or, when the new release ships r (or a directory above it) as something
// else, r with that path element renamed NAME.notsotuf-user. merge: the new
// release ships r as a directory and r is one: carry its entries.
func (c *carrier) dest(r string, isDir bool) (dst string, merge bool, err error) {
	parts := strings.Split(r, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		rest := strings.Join(parts[i+1:], "/")
		if alt, ok := c.aside[q]; ok {
			return path.Join(alt, rest), false, nil
		}
		e, shipped := c.neu[q]
		if !shipped {
			if i == len(parts)-1 {
				if ok, err := exists(c.fsys, c.dst(q)); err != nil {
					return "", false, err
				} else if ok {
					// Taken by the user's copy of another entry: find another name.
					alt, err := c.freeName(q)
					return alt, false, err
				}
			}
			return r, false, nil
		}
		last := i == len(parts)-1
		if e.kind == shippedDir && (!last || isDir) {
			if last {
				return r, true, nil
			}
			continue
		}
		alt, err := c.freeName(q)
		if err != nil {
			return "", false, err
		}
		c.aside[q] = alt
		return path.Join(alt, rest), false, nil
	}
	return r, false, nil
}

// freeName returns q + ".notsotuf-user" (or -2, -3...): a name that the new
// release does not ship, that the new tree does not hold yet, and that the
// user does not have (the user's own entry keeps its name).
func (c *carrier) freeName(q string) (string, error) {
	for k := 1; k <= 100; k++ {
		alt := q + userSuffix
		if k > 1 {
			alt += fmt.Sprintf("-%d", k)
		}
		if _, shipped := c.neu[alt]; shipped {
			continue
		}
		taken, err := exists(c.fsys, c.dst(alt))
		if err != nil {
			return "", err
		}
		if !taken {
			if taken, err = exists(c.fsys, c.src(alt)); err != nil {
				return "", err
			}
		}
		if !taken {
			return alt, nil
		}
	}
	return "", fmt.Errorf("no free name for the user's copy of %q", q)
}

// parents creates the directories above dst in the new tree that it lacks
// (a directory the installed release shipped and the new one does not),
// with the modes of the directories above r, and makes the directory that
// receives the entry writable.
func (c *carrier) parents(r, dst string) error {
	sp, dp := strings.Split(r, "/"), strings.Split(dst, "/")
	for i := 1; i < len(dp); i++ {
		d := c.dst(strings.Join(dp[:i], "/"))
		fi, err := lstat(c.fsys, d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s: not a directory", d)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		mode := fs.FileMode(0o755)
		if i <= len(sp) {
			if sfi, err := lstat(c.fsys, c.src(strings.Join(sp[:i], "/"))); err == nil && sfi.IsDir() {
				mode = sfi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
			}
		}
		parent := filepath.Dir(d)
		if err := makeWritable(c.fsys, parent, c.restore); err != nil {
			return err
		}
		if err := c.fsys.Mkdir(d, 0o700); err != nil {
			return err
		}
		c.touched[parent] = true
		// Keep it writable while entries go in; its mode is set at the end.
		c.restore[d] = mode
	}
	parent := filepath.Dir(c.dst(dst))
	c.touched[parent] = true
	return makeWritable(c.fsys, parent, c.restore)
}

// copyEntry carries the file, directory (with its content) or symbolic
// link src to dst, which does not exist.
func (c *carrier) copyEntry(src, dst string, fi fs.FileInfo) error {
	mode := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch {
	case fi.IsDir():
		if err := c.fsys.Mkdir(dst, 0o700); err != nil {
			return err
		}
		c.n++
		c.touched[dst] = true
		names, err := readDirNames(c.fsys, src)
		if err != nil {
			return err
		}
		for _, name := range names {
			cs := filepath.Join(src, name)
			cfi, err := lstat(c.fsys, cs)
			if err != nil {
				return err
			}
			if err := c.copyEntry(cs, filepath.Join(dst, name), cfi); err != nil {
				return err
			}
		}
		c.attrs(src, dst, fi, false)
		if err := c.fsys.Chmod(dst, mode); err != nil {
			return err
		}
		return c.fsys.Chtimes(dst, fi.ModTime(), fi.ModTime())
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := readlink(c.fsys, src)
		if err != nil {
			return err
		}
		l, ok := c.fsys.(afero.Linker)
		if !ok {
			c.in.logger().Warn("not kept: this file system cannot make symbolic links", "path", src)
			return nil
		}
		if err := l.SymlinkIfPossible(target, dst); err != nil {
			return err
		}
		c.n++
		c.attrs(src, dst, fi, true)
		setLinkTimes(c.fsys, dst, fi.ModTime())
		return nil
	case fi.Mode().IsRegular():
		c.n++
		if hardLink(c.fsys, src, dst) == nil {
			return nil // the same file: bytes, mode, times and attributes
		}
		if err := copyFileTo(c.fsys, src, dst, fi.Size()); err != nil {
			return err
		}
		c.attrs(src, dst, fi, false)
		if err := c.fsys.Chmod(dst, mode); err != nil {
			return err
		}
		return c.fsys.Chtimes(dst, fi.ModTime(), fi.ModTime())
	default:
		c.in.logger().Warn("not kept: only files, directories and symbolic links are carried into the new tree", "path", src, "type", fileKind(fi.Mode()))
		return nil
	}
}

// attrs copies the owner (when running as root) and extended attributes
// of src to dst, best effort (logged).
func (c *carrier) attrs(src, dst string, fi fs.FileInfo, link bool) {
	if err := copyOwner(c.fsys, dst, fi); err != nil {
		c.in.logger().Warn("cannot keep the owner of a file", "path", src, "err", err)
	}
	if err := copyXattrs(c.fsys, src, dst); err != nil && !link {
		c.in.logger().Warn("cannot keep the extended attributes of a file", "path", src, "err", err)
	}
}

// copyFileTo copies the regular file src (of size bytes) to the new file
// dst, synced.
func copyFileTo(fsys afero.Fs, src, dst string, size int64) (err error) {
	in, err := openNoFollow(fsys, src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := openNoFollow(fsys, dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fsys.Remove(dst)
		}
	}()
	n, err := io.Copy(out, in)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("copying %s: %d bytes, expected %d (it changed while being copied)", src, n, size)
	}
	return out.Sync()
}
