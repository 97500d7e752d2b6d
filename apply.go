package notsotuf

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/afero"
)

// patchStep is one patch of a chain.
type patchStep struct {
	Name string    // target name of the patch, for errors
	Path string    // the patch file, already verified against signed metadata
	Meta PatchMeta // signed size and sha256 of the tar the patch produces, and its format
	// Format applies the patch; the zero value means the built-in format
	// Meta.Format names.
	Format PatchFormat
}

// applyPatchChain turns the uncompressed tar at basePath into the tar of the
// last step by applying each patch in turn, and writes that tar to dstPath
// atomically (a temporary file beside it, renamed once complete; not
// flushed to disk, since the client checks a cached tar against its signed
// hash before every use).
//
// Each patch streams: the previous tar is read through io.ReaderAt, and the
// output is hashed while it is written, to a temporary file beside dstPath
// for the intermediate steps, so memory use does not depend on the tar
// sizes and at most two temporary tars exist at once. Each output is checked
// against its own step's signed tar_size and tar_hash (sha256); writing
// stops as soon as an output would exceed tar_size. A mismatch is an error
// wrapping [ErrCorruptPatch] that names the patch. Temporary files are
// removed on every path, and stale ones from an interrupted run (names
// starting with "."+base(dstPath)+".step-" or ".tmp-") are removed first.
//
// progress, if not nil, is called with the number of bytes just written
// (a delta; the sum over the chain is the total of the steps' tar_size).
// Canceling ctx stops the chain at the next write.
func applyPatchChain(ctx context.Context, fsys afero.Fs, basePath string, steps []patchStep, dstPath string, progress func(n int64)) error {
	return applyPatchChainTee(ctx, fsys, basePath, steps, dstPath, progress, nil)
}

// applyPatchChainTee is applyPatchChain that also copies the last step's
// output, as it is produced, to tee (when not nil). What tee received is
// only the signed tar once applyPatchChainTee has returned nil.
func applyPatchChainTee(ctx context.Context, fsys afero.Fs, basePath string, steps []patchStep, dstPath string, progress func(n int64), tee io.Writer) (err error) {
	if len(steps) == 0 {
		return fmt.Errorf("applying patches to %s: no patches", basePath)
	}
	dir, base := filepath.Split(dstPath)
	if dir == "" {
		dir = "."
	}
	stepPrefix := "." + base + ".step-"
	if err := removeStale(fsys, dir, stepPrefix, "."+base+".tmp-"); err != nil {
		return fmt.Errorf("applying patches to %s: %w", basePath, err)
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			if rerr := fsys.Remove(t); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
				err = fmt.Errorf("applying patches: removing %s: %w", t, rerr)
			}
		}
	}()
	cur := basePath
	for i, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i == len(steps)-1 {
			return writeCacheFile(fsys, dstPath, func(w io.Writer) error {
				if tee != nil {
					w = io.MultiWriter(w, tee)
				}
				if err := applyStep(ctx, fsys, cur, st, w, progress); err != nil {
					return &patchError{name: st.Name, err: err}
				}
				return nil
			})
		}
		f, err := createTemp(fsys, dir, stepPrefix+"*")
		if err != nil {
			return fmt.Errorf("applying patch %s: %w", st.Name, err)
		}
		temps = append(temps, f.Name())
		err = applyStep(ctx, fsys, cur, st, f, progress)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("applying patch %s: %w", st.Name, cerr)
		}
		if err != nil {
			return &patchError{name: st.Name, err: err}
		}
		if cur != basePath {
			// The previous intermediate tar is no longer needed.
			if err := fsys.Remove(cur); err != nil {
				return fmt.Errorf("applying patches: removing %s: %w", cur, err)
			}
			temps = temps[1:]
		}
		cur = f.Name()
	}
	return nil // not reached: the last step returns
}

// applyStep applies one patch to the tar at oldPath, writing to w.
func applyStep(ctx context.Context, fsys afero.Fs, oldPath string, st patchStep, w io.Writer, progress func(int64)) error {
	if st.Meta.TarSize < 0 {
		return fmt.Errorf("applying patch %s: negative tar_size %d", st.Name, st.Meta.TarSize)
	}
	format := st.Format
	if format.Patcher == nil {
		var err error
		if format, err = LookupPatchFormat(st.Meta.Format); err != nil {
			return fmt.Errorf("applying patch %s: %w", st.Name, err)
		}
	}
	old, err := openNoFollow(fsys, oldPath, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("applying patch %s: %w", st.Name, err)
	}
	defer old.Close()
	fi, err := old.Stat()
	if err != nil {
		return fmt.Errorf("applying patch %s: %w", st.Name, err)
	}
	p, err := openNoFollow(fsys, st.Path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("applying patch %s: %w", st.Name, err)
	}
	defer p.Close()
	// Patches are made of many small control triples: batch the writes.
	// (Reads of the old tar hop between tar members: a read-ahead window
	// copied 33 GB to patch an 80 MB tar, so they go straight to ReadAt.)
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &checkedWriter{ctx: ctx, w: bw, h: sha256.New(), max: st.Meta.TarSize, progress: progress}
	// Scratch files (the compact format's) go beside the old tar, under a
	// name the next run's removeStale finds if this one is interrupted.
	popts := &PatchOptions{Fs: fsys, TempDir: filepath.Dir(oldPath), TempPrefix: "." + filepath.Base(oldPath) + ".tmp-"}
	_, err = format.Apply(old, fi.Size(), &lockedFile{f: p}, cw, popts)
	if err == nil {
		err = bw.Flush()
	}
	if cw.over {
		return fmt.Errorf("applying patch %s to %s: output exceeds the signed tar_size of %d bytes: %w", st.Name, oldPath, st.Meta.TarSize, ErrCorruptPatch)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("applying patch %s to %s: %w", st.Name, oldPath, err)
	}
	if cw.n != st.Meta.TarSize {
		return fmt.Errorf("applying patch %s to %s: output is %d bytes, signed tar_size is %d: %w", st.Name, oldPath, cw.n, st.Meta.TarSize, ErrCorruptPatch)
	}
	if sum := hex.EncodeToString(cw.h.Sum(nil)); !strings.EqualFold(sum, st.Meta.TarHash) {
		return fmt.Errorf("applying patch %s to %s: output sha256 %s, signed tar_hash %s: %w", st.Name, oldPath, sum, st.Meta.TarHash, ErrCorruptPatch)
	}
	return nil
}

// checkedWriter hashes and counts what it writes, refuses to go beyond max
// bytes and stops once ctx is done.
type checkedWriter struct {
	ctx      context.Context
	w        io.Writer
	h        hash.Hash
	n, max   int64
	over     bool
	progress func(int64)
}

var errOverSize = errors.New("output exceeds the signed size")

func (c *checkedWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(p)) > c.max-c.n {
		c.over = true
		return 0, errOverSize
	}
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(int64(n))
	}
	return n, err
}

// lockedFile serializes the reads of a file. Apply reads the blocks of a
// patch that is an io.ReaderAt from several goroutines, and the ReadAt of
// some afero files (MemMapFs) moves a shared offset.
type lockedFile struct {
	mu sync.Mutex
	f  afero.File
}

func (l *lockedFile) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Read(p)
}

func (l *lockedFile) ReadAt(p []byte, off int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.ReadAt(p, off)
}

func (l *lockedFile) Seek(off int64, whence int) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Seek(off, whence)
}

// removeStale removes the regular files of dir whose names start with one
// of prefixes.
func removeStale(fsys afero.Fs, dir string, prefixes ...string) error {
	infos, err := afero.ReadDir(fsys, dir)
	if err != nil {
		return err
	}
	for _, fi := range infos {
		if !fi.Mode().IsRegular() {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(fi.Name(), p) {
				if err := fsys.Remove(filepath.Join(dir, fi.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				break
			}
		}
	}
	return nil
}
