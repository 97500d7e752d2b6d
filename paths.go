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

// cleanConfigPath returns the install or cache path p of a client
// configuration as an absolute, clean path. On the operating system's file
// system a relative path is made absolute against the working directory
// (filepath.Abs), so that "." or "../app" name a directory with a parent
// and a base name, as the installer's siblings (.<base>.notsotuf-new, the
// lock...) need. Another Fs has no working directory: there p is only
// cleaned, and a path without a base name of its own ("", ".", "..", a
// root) is refused.
func cleanConfigPath(fsys afero.Fs, what, p string) (string, error) {
	if _, ok := fsys.(*afero.OsFs); ok {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("config: %s %q: %w", what, p, err)
		}
		p = abs
	}
	p = filepath.Clean(p)
	base := filepath.Base(p)
	if base == "." || base == ".." || base == string(filepath.Separator) || strings.HasSuffix(p, string(filepath.Separator)) {
		if filepath.IsAbs(p) {
			return "", fmt.Errorf("config: %s %q is a file system root: give the directory that holds the application", what, p)
		}
		return "", fmt.Errorf("config: %s %q has no name of its own: give an absolute path", what, p)
	}
	return p, nil
}

// dirsOverlap reports how the cache and install paths a and b (absolute,
// clean, symbolic links resolved) overlap: "" when they do not, else a
// description. On Windows paths compare without regard to case.
func dirsOverlap(install, cache string) string {
	within := func(child, parent string) bool {
		rel, err := filepath.Rel(parent, child)
		if err != nil {
			return false
		}
		if runtime.GOOS == "windows" {
			rel2, err := filepath.Rel(strings.ToLower(parent), strings.ToLower(child))
			if err == nil {
				rel = rel2
			}
		}
		return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
	}
	switch {
	case within(cache, install) && within(install, cache):
		return "the cache directory is the install directory"
	case within(cache, install):
		return "the cache directory is inside the install directory"
	case within(install, cache):
		return "the install directory is inside the cache directory"
	}
	return ""
}

// errOverlap is the error for an install and a cache path that overlap.
func errOverlap(how, install, cache, detail string) error {
	return fmt.Errorf("config: %s (install: %s, cache: %s%s): an update replaces the install directory, so the trusted metadata in the cache would go with it and with it the protection against rollback and freeze attacks; choose a cache directory outside the install directory", how, install, cache, detail)
}

// checkDirs refuses a cache directory that is, or is inside, the install
// directory, or an install directory inside the cache directory, as the
// file system resolves them: through symbolic links (of the paths or of
// their parents) and, where the file system gives identities (device and
// inode on Unix), through bind mounts and other aliases. NewClient has
// refused the plain lexical case already.
func (c *Client) checkDirs() error {
	inst, err := resolvePath(c.fs, c.installDir)
	if err != nil {
		return fmt.Errorf("config: install directory %s: %w", c.installDir, err)
	}
	cache, err := resolvePath(c.fs, c.cacheDir)
	if err != nil {
		return fmt.Errorf("config: cache directory %s: %w", c.cacheDir, err)
	}
	detail := ""
	if inst != c.installDir || cache != c.cacheDir {
		detail = fmt.Sprintf("; through symbolic links: %s and %s", inst, cache)
	}
	if how := dirsOverlap(inst, cache); how != "" {
		return errOverlap(how, c.installDir, c.cacheDir, detail)
	}
	// The same directory under two names (a bind mount, a case-insensitive
	// file system): compare identities along both paths.
	if id, ok := pathIdentity(c.fs, inst); ok && ancestorHas(c.fs, cache, id) {
		return errOverlap("the cache directory is inside the install directory", c.installDir, c.cacheDir, "; the same directory under another name")
	}
	if id, ok := pathIdentity(c.fs, cache); ok && ancestorHas(c.fs, inst, id) {
		return errOverlap("the install directory is inside the cache directory", c.installDir, c.cacheDir, "; the same directory under another name")
	}
	return nil
}

// pathIdentity returns the identity of the file at p (not following a
// final symbolic link), if it exists and the file system gives one.
func pathIdentity(fsys afero.Fs, p string) (fileID, bool) {
	fi, err := lstat(fsys, p)
	if err != nil {
		return fileID{}, false
	}
	return fileIdentity(fi)
}

// ancestorHas reports whether p or one of its existing parents has the
// identity id.
func ancestorHas(fsys afero.Fs, p string, id fileID) bool {
	for {
		if got, ok := pathIdentity(fsys, p); ok && got == id {
			return true
		}
		parent := filepath.Dir(p)
		if parent == p {
			return false
		}
		p = parent
	}
}

// resolvePath returns p with every symbolic link in it resolved through
// fsys (afero.Lstater and afero.LinkReader; without them p is returned
// cleaned), like filepath.EvalSymlinks but without package os, and
// tolerating a path whose end does not exist yet: the part that exists is
// resolved and the rest appended. p is cleaned first (as NewClient cleans
// the configured paths: ".." in p is lexical, in a link's target it is
// not). At most 255 links are followed. A relative p (possible on an Fs other than the operating
// system's, see cleanConfigPath) is returned cleaned.
func resolvePath(fsys afero.Fs, p string) (string, error) {
	ls, ok1 := fsys.(afero.Lstater)
	lr, ok2 := fsys.(afero.LinkReader)
	p = filepath.Clean(p)
	if !ok1 || !ok2 || !filepath.IsAbs(p) {
		return p, nil
	}
	vol := filepath.VolumeName(p)
	resolved := vol + string(filepath.Separator)
	todo := splitPath(p[len(vol):])
	hops := 0
	for len(todo) > 0 {
		el := todo[0]
		todo = todo[1:]
		switch el {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, el)
		fi, _, err := ls.LstatIfPossible(next)
		if errors.Is(err, fs.ErrNotExist) {
			// Nothing below exists: the rest is taken as it is.
			return filepath.Join(append([]string{next}, todo...)...), nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := lr.ReadlinkIfPossible(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) || filepath.VolumeName(target) != "" {
			v := filepath.VolumeName(target)
			resolved = v + string(filepath.Separator)
			target = target[len(v):]
		}
		todo = append(splitPath(target), todo...)
	}
	return resolved, nil
}

// splitPath splits p at its separators.
func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == filepath.Separator })
}
