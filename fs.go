package notsotuf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	f, err := afero.TempFile(fsys, dir, "."+base+".tmp-*")
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

// hashFile returns the size and hex sha256 of a file, streaming it.
func hashFile(fsys afero.Fs, name string) (size int64, sum string, err error) {
	f, err := fsys.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", name, err)
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
