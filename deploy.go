package notsotuf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"

	"github.com/spf13/afero"
)

// DeployReport says what [Deploy] did.
type DeployReport struct {
	Copied    []string // files written to the destination, in the order written
	Unchanged int      // files already identical at the destination
	Removed   []string // files removed from the destination's targets/ and metadata/
}

// Deploy copies a published repository (its metadata/ and targets/
// directories) from src to dst, for example onto a mounted share or a
// directory that a web server serves, in the one order that never shows a
// client metadata naming files that are not there yet:
//
//  1. targets/ files (archives and patches);
//  2. root metadata (N.root.json in version order, then root.json);
//  3. targets metadata, then snapshot metadata (versioned names first);
//  4. timestamp.json, last;
//  5. only then, files the source no longer has are removed from dst.
//
// Each file is written atomically (a temporary name, then a rename) and only
// when its content differs, so running Deploy twice copies nothing the
// second time. src and dst may be different file systems.
func Deploy(src afero.Fs, srcDir string, dst afero.Fs, dstDir string) (*DeployReport, error) {
	rep := &DeployReport{}
	var srcFiles = map[string]bool{}
	list := func(sub string) ([]string, error) {
		entries, err := afero.ReadDir(src, filepath.Join(srcDir, sub))
		if err != nil {
			return nil, fmt.Errorf("deploy: read %s: %w", filepath.Join(srcDir, sub), err)
		}
		var names []string
		for _, e := range entries {
			if e.Mode().IsRegular() && !isTempName(e.Name()) {
				names = append(names, path.Join(sub, e.Name()))
				srcFiles[path.Join(sub, e.Name())] = true
			}
		}
		return names, nil
	}
	targets, err := list("targets")
	if err != nil {
		return nil, err
	}
	meta, err := list("metadata")
	if err != nil {
		return nil, err
	}
	if !srcFiles["metadata/timestamp.json"] || !srcFiles["metadata/root.json"] {
		return nil, fmt.Errorf("deploy: %s is not a published repository (no metadata/root.json or metadata/timestamp.json)", srcDir)
	}
	sort.Strings(targets)
	sort.SliceStable(meta, func(i, j int) bool {
		a, b := metaRank(meta[i]), metaRank(meta[j])
		return slices.Compare(a[:], b[:]) < 0
	})

	for _, sub := range []string{"targets", "metadata"} {
		if err := dst.MkdirAll(filepath.Join(dstDir, sub), 0o755); err != nil {
			return rep, fmt.Errorf("deploy: %w", err)
		}
	}
	for _, name := range append(targets, meta...) {
		copied, err := copyIfChanged(src, filepath.Join(srcDir, filepath.FromSlash(name)), dst, filepath.Join(dstDir, filepath.FromSlash(name)))
		if err != nil {
			return rep, fmt.Errorf("deploy: %s: %w", name, err)
		}
		if copied {
			rep.Copied = append(rep.Copied, name)
		} else {
			rep.Unchanged++
		}
	}
	for _, sub := range []string{"targets", "metadata"} {
		entries, err := afero.ReadDir(dst, filepath.Join(dstDir, sub))
		if err != nil {
			return rep, fmt.Errorf("deploy: %w", err)
		}
		for _, e := range entries {
			name := path.Join(sub, e.Name())
			if !e.Mode().IsRegular() || srcFiles[name] {
				continue
			}
			if err := dst.Remove(filepath.Join(dstDir, sub, e.Name())); err != nil {
				return rep, fmt.Errorf("deploy: remove stale %s: %w", name, err)
			}
			rep.Removed = append(rep.Removed, name)
		}
	}
	return rep, nil
}

var versionedMeta = regexp.MustCompile(`^metadata/([0-9]+)\.(root|targets|snapshot)\.json$`)

// metaRank orders metadata files for publishing: roots by version, then
// targets, snapshot, timestamp, versioned files before unversioned ones.
func metaRank(name string) [3]int64 {
	if m := versionedMeta.FindStringSubmatch(name); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 63)
		return [3]int64{roleRank(m[2]), 0, n}
	}
	base := path.Base(name)
	role := base[:len(base)-len(path.Ext(base))]
	return [3]int64{roleRank(role), 1, 0}
}

func roleRank(role string) int64 {
	switch role {
	case "root":
		return 0
	case "targets":
		return 2
	case "snapshot":
		return 3
	case "timestamp":
		return 4
	}
	return 1 // delegated targets roles, before the top-level targets
}

func isTempName(name string) bool { return len(name) > 0 && name[0] == '.' }

// copyIfChanged copies a file unless dst already has the same bytes.
func copyIfChanged(src afero.Fs, srcName string, dst afero.Fs, dstName string) (bool, error) {
	sfi, err := src.Stat(srcName)
	if err != nil {
		return false, err
	}
	if dfi, err := dst.Stat(dstName); err == nil && dfi.Size() == sfi.Size() {
		same, err := sameContent(src, srcName, dst, dstName)
		if err != nil {
			return false, err
		}
		if same {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	in, err := src.Open(srcName)
	if err != nil {
		return false, err
	}
	defer in.Close()
	err = writeAtomic(dst, dstName, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	return err == nil, err
}

func sameContent(afs afero.Fs, a string, bfs afero.Fs, b string) (bool, error) {
	fa, err := afs.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := bfs.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}
