package notsotuf

import (
	"bufio"
	"encoding/json"
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

// The install manifest is the record, kept beside the installed tree
// (.<base>.notsotuf-manifest) or executable (<exe>.notsotuf-manifest), of
// what a notsotuf install put there: which app, which version, and every
// entry the release shipped. It tells the client that a directory is one
// it installed (see Client.Install), and which files in it came with the
// release and which were added since (by the application or its user).
//
// Format: JSON lines, so that a tree of any size is written and checked
// without holding it in memory. The first line is the header
//
//	{"manifest":1,"app":"myapp","version":"1.2.0"}
//
// and each further line one entry, in the order of a walk over sorted
// directory listings, with a slash-separated path relative to the tree:
//
//	{"path":"bin","type":"dir","mode":"0755"}
//	{"path":"bin/app","type":"file","mode":"0755","size":123}
//	{"path":"lib/libx.so","type":"symlink","link":"libx.so.1"}
//
// A tree's files carry no content hash: hashing every file at every
// install would cost a second pass over the release (about half the
// install time of a 40 MiB bundle here, BenchmarkInstallManifestCost),
// and the release's content is known anyway from its version (the
// repository signs its tar's sha256). In single-executable mode the
// entries are the contents the executable may have ("path" is its base
// name, with size and sha256): while a swap is under way both the old and
// the new one, so that a crash at any instant leaves a manifest that
// describes the executable.
const manifestFormat = 1

// maxManifestLine bounds one line of an install manifest (a path and a
// link target of at most 4096 bytes each, JSON-escaped).
const maxManifestLine = 64 << 10

type manifestHeader struct {
	Manifest int    `json:"manifest"`
	App      string `json:"app"`
	Version  string `json:"version"`
}

type installedEntry struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // "dir", "file" or "symlink"
	Mode   string `json:"mode,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
}

// writeTreeManifest writes the install manifest of the tree at dir to
// dst, which must not be in use: the tree is walked and dst written and
// synced.
func writeTreeManifest(fsys afero.Fs, dir, dst, app, version string) error {
	return writeManifest(fsys, dst, app, version, func(emit func(installedEntry) error) error {
		return treeEntries(fsys, dir, emit)
	})
}

// treeEntries calls emit with the manifest entry of each entry of the tree
// at dir, in the order of a walk over sorted directory listings.
func treeEntries(fsys afero.Fs, dir string, emit func(installedEntry) error) error {
	return afero.Walk(fsys, dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e := installedEntry{Path: filepath.ToSlash(rel), Mode: fmt.Sprintf("%04o", fi.Mode().Perm())}
		switch {
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type, e.Mode = "symlink", ""
			if e.Link, err = readlink(fsys, p); err != nil {
				return err
			}
			e.Link = filepath.ToSlash(e.Link)
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
		default:
			return fmt.Errorf("%s: unexpected file type %s", p, fi.Mode().Type())
		}
		return emit(e)
	})
}

// writeManifest writes an install manifest to dst (replacing it, not
// atomically: callers write a staged name, or use writeExeManifest),
// synced to disk.
func writeManifest(fsys afero.Fs, dst, app, version string, entries func(emit func(installedEntry) error) error) (err error) {
	if err := fsys.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("install manifest %s: %w", dst, err)
	}
	f, err := fsys.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("install manifest %s: %w", dst, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("install manifest %s: %w", dst, cerr)
		}
		if err != nil {
			fsys.Remove(dst)
		}
	}()
	err = encodeManifest(f, app, version, entries)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("install manifest %s: %w", dst, err)
	}
	return nil
}

func encodeManifest(w io.Writer, app, version string, entries func(emit func(installedEntry) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw) // one value per line
	enc.SetEscapeHTML(false)
	if err := enc.Encode(manifestHeader{Manifest: manifestFormat, App: app, Version: version}); err != nil {
		return err
	}
	if err := entries(func(e installedEntry) error { return enc.Encode(e) }); err != nil {
		return err
	}
	return bw.Flush()
}

// writeExeManifest writes the install manifest of an executable
// atomically: the executable's path (its base name) may hold any of
// contents.
func writeExeManifest(fsys afero.Fs, dst, exe, app, version string, contents []installedEntry) error {
	return writeAtomic(fsys, dst, 0o644, func(w io.Writer) error {
		return encodeManifest(w, app, version, func(emit func(installedEntry) error) error {
			for _, e := range contents {
				e.Path, e.Type = filepath.Base(exe), "file"
				if err := emit(e); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// errNoManifest is returned by readManifest when there is no manifest.
var errNoManifest = errors.New("no install manifest")

// readManifest reads the install manifest at p, calling fn for each
// entry; fn's error stops the reading and is returned. A missing file is
// errNoManifest; a malformed one an error naming it.
func readManifest(fsys afero.Fs, p string, fn func(manifestHeader, installedEntry) error) (manifestHeader, error) {
	var h manifestHeader
	// Only a regular file is read: a FIFO would block the open, a link
	// could point anywhere.
	fi, err := lstat(fsys, p)
	if errors.Is(err, os.ErrNotExist) {
		return h, errNoManifest
	}
	if err != nil {
		return h, fmt.Errorf("install manifest %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return h, fmt.Errorf("install manifest %s: not a regular file", p)
	}
	f, err := openNoFollow(fsys, p, os.O_RDONLY, 0)
	if err != nil {
		return h, fmt.Errorf("install manifest %s: %w", p, err)
	}
	defer f.Close()
	// Planted by another user, it could vouch for a directory that is not
	// the application's.
	if err := checkStateOwner(fsys, f, p, "install manifest"); err != nil {
		return h, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxManifestLine)
	line := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("install manifest %s: line %d: %s", p, line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		if line == 1 {
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
				return h, bad("%v", err)
			}
			if h.Manifest != manifestFormat {
				return h, bad("format %d, want %d", h.Manifest, manifestFormat)
			}
			continue
		}
		var e installedEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return h, bad("%v", err)
		}
		if !validManifestPath(e.Path) {
			return h, bad("path %q is not a clean relative path", e.Path)
		}
		switch e.Type {
		case "dir", "file", "symlink":
		default:
			return h, bad("type %q", e.Type)
		}
		if err := fn(h, e); err != nil {
			return h, err
		}
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("install manifest %s: line %d: %w", p, line+1, err)
	}
	if line == 0 {
		return h, fmt.Errorf("install manifest %s: empty", p)
	}
	return h, nil
}

// validManifestPath reports whether p is a clean, relative,
// slash-separated path that stays inside the tree.
func validManifestPath(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) && p != ".." &&
		!strings.HasPrefix(p, "../") && !strings.ContainsAny(p, "\\\x00") && filepath.VolumeName(filepath.FromSlash(p)) == ""
}

// errManifestMismatch stops the reading of a manifest at the first entry
// the tree does not have.
type errManifestMismatch struct{ reason string }

func (e *errManifestMismatch) Error() string { return e.reason }

// checkTreeManifest reports whether the install manifest at mpath names
// app and the tree at dir holds every entry it lists, with the same type
// (and, for symbolic links, the same target). Entries the tree has beyond
// them are allowed (files the application or its user added), and so are
// changed contents of files: the manifest proves that a notsotuf install
// made this directory, not that it is untouched. When the answer is no,
// reason says why in a few words.
func checkTreeManifest(fsys afero.Fs, dir, mpath, app string) (ok bool, reason string, err error) {
	files := 0 // files and links found: directories alone prove nothing
	h, err := readManifest(fsys, mpath, func(h manifestHeader, e installedEntry) error {
		if h.App != app {
			return &errManifestMismatch{fmt.Sprintf("%s records an install of %q", mpath, h.App)}
		}
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		fi, err := lstat(fsys, p)
		if err != nil {
			return &errManifestMismatch{fmt.Sprintf("%q, installed by notsotuf (%s), is missing", e.Path, mpath)}
		}
		got := "file"
		switch {
		case fi.IsDir():
			got = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			got = "symlink"
		case !fi.Mode().IsRegular():
			got = fi.Mode().Type().String()
		}
		if got != e.Type {
			return &errManifestMismatch{fmt.Sprintf("%q was installed as a %s and is now a %s (%s)", e.Path, e.Type, got, mpath)}
		}
		if e.Type == "symlink" {
			if t, err := readlink(fsys, p); err != nil || filepath.ToSlash(t) != e.Link {
				return &errManifestMismatch{fmt.Sprintf("symbolic link %q no longer points to %q (%s)", e.Path, e.Link, mpath)}
			}
		}
		if e.Type != "dir" {
			files++
		}
		return nil
	})
	var mm *errManifestMismatch
	switch {
	case errors.Is(err, errNoManifest):
		return false, "no install manifest " + mpath, nil
	case errors.As(err, &mm):
		return false, mm.reason, nil
	case err != nil:
		return false, "", err
	case h.App != app:
		return false, fmt.Sprintf("%s records an install of %q", mpath, h.App), nil
	case files == 0:
		return false, fmt.Sprintf("%s records no file", mpath), nil
	}
	return true, "", nil
}

// checkExeManifest reports whether the install manifest at mpath names
// app and records the executable's content (size and sha256).
func checkExeManifest(fsys afero.Fs, mpath, app string, size int64, sum func() (string, error)) (ok bool, reason string, err error) {
	found := false
	h, err := readManifest(fsys, mpath, func(_ manifestHeader, e installedEntry) error {
		if e.Type != "file" || e.Size != size {
			return nil // the file is not hashed unless its size fits
		}
		s, err := sum()
		if err != nil {
			return err
		}
		if e.SHA256 == s {
			found = true
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoManifest):
		return false, "no install manifest " + mpath, nil
	case err != nil:
		return false, "", err
	case h.App != app:
		return false, fmt.Sprintf("%s records an install of %q", mpath, h.App), nil
	case !found:
		return false, fmt.Sprintf("its content is not what notsotuf installed (%s)", mpath), nil
	}
	return true, "", nil
}
