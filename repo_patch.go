package notsotuf

import (
	"context"
	"io"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/spf13/afero"
)

// diffTarFiles writes to w the patch from the tar file oldTar to the tar file
// newTar, reporting the engine's phases to progress (which may be nil).
// The patch engine needs both in memory (see Diff).
func diffTarFiles(ctx context.Context, fsys afero.Fs, oldTar, newTar string, w io.Writer, progress func(phase string, done, total int64)) error {
	old, err := afero.ReadFile(fsys, oldTar)
	if err != nil {
		return err
	}
	cur, err := afero.ReadFile(fsys, newTar)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return bsdiff.Diff(old, cur, w, &bsdiff.DiffOptions{Progress: progress})
}

// applyPatchStream applies patch to old (oldSize bytes), streaming the result to w.
// The patch is passed as a plain io.Reader: Apply reads an io.ReaderAt patch
// from several goroutines, and afero's in-memory files do not support
// concurrent ReadAt (it moves the shared offset).
func applyPatchStream(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, progress func(done, total int64)) (int64, error) {
	return Apply(old, oldSize, struct{ io.Reader }{patch}, w, &PatchOptions{Progress: progress})
}
